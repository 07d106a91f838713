"""The training loop of one worker: its shard of the training data, the micro batches from a
given optimizer step on (bit-exact after a resume), and the optimizer steps with their log
lines, metrics, English-dev validations and checkpoints."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch

from xit_dist.config.batch import split_batch
from xit_dist.train.checkpoint import restore_rng_state, save_and_report
from xit_dist.train.engine import BatchGeometry
from xit_dist.train.job import PhaseJob
from xit_dist.train.metrics_sink import LOSS_WINDOW, MetricsSink, loss_window_record, restored_loss_window


def shard_loader(features, collate, micro: int, rank: int, world_size: int, seed: int):
    """This rank's shuffled shard of ``features`` in micro batches of ``micro`` (the last,
    incomplete one dropped); returns the loader and its sampler (``set_epoch`` reshuffles)."""
    from torch.utils.data import DataLoader, DistributedSampler

    sampler = DistributedSampler(features, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
    loader = DataLoader(
        features, batch_size=micro, sampler=sampler, collate_fn=collate, drop_last=True, pin_memory=torch.cuda.is_available()
    )
    return loader, sampler


def build_train_loader(job: PhaseJob, tokenizer, rank: int, world_size: int, records: list | None = None):
    """Each rank's shard of the training features, padded per micro batch by the format's collator;
    ``records`` receives what was read (``data.dataset_records``)."""
    from xit_dist.data.features import training_features
    from xit_dist.tasks.formats import get_format
    from xit_dist.tasks.registry import get_task

    task = get_task(job.task)
    features = training_features(
        task, tokenizer, job.options, job.data_dir, job.data_revision, limit=job.training.max_train_examples, stage=job.stage,
        records=records,
    )
    collate = get_format(task.format).collator(tokenizer)
    return shard_loader(features, collate, split_batch(job.training, world_size).micro_batch_size, rank, world_size, job.seed)


def micro_batches(loader, sampler, geometry: BatchGeometry, start_step: int, rng=None):
    """The micro batches from optimizer step ``start_step`` on, epoch after epoch.

    On resume, ``rng`` is restored where it was saved relative to the epoch's data iterator
    (mid-epoch: after the iterator exists and the trained batches are skipped; at an epoch's
    end: before the next iterator): creating an iterator draws from torch's generator, so any
    other order shifts every later dropout mask and breaks bit-for-bit resumption."""
    step = start_step
    per_epoch = geometry.steps_per_epoch * geometry.accumulation_steps
    while True:
        epoch = step // geometry.steps_per_epoch
        sampler.set_epoch(epoch)
        skip = (step - epoch * geometry.steps_per_epoch) * geometry.accumulation_steps
        if rng is not None and skip == 0:
            restore_rng_state(rng)
            rng = None
        for index, batch in enumerate(loader):
            if index < skip:
                continue
            if rng is not None:
                restore_rng_state(rng)
                rng = None
            if index >= per_epoch:
                break
            yield batch
        step = (epoch + 1) * geometry.steps_per_epoch


class CheckpointClock:
    """``checkpoint_every_minutes``: a checkpoint at the first log step after that much time
    since the last one, so that a killed driver loses at most that much of a long epoch. Rank 0's
    clock decides and every rank follows (each checkpoint's ``ray.train.report`` is a barrier of
    all ranks). Asked at log steps only: the loop syncs with the device there anyway, and the
    loss window starts afresh there, so a run resumed from it logs the same losses."""

    def __init__(self, minutes: float, rank: int, device):
        self.seconds, self.rank, self.device = minutes * 60, rank, device
        self.restart()

    def restart(self) -> None:
        self.last = time.monotonic()

    def due(self) -> bool:
        if self.seconds <= 0:
            return False
        due = self.rank == 0 and time.monotonic() - self.last >= self.seconds
        flag = torch.tensor([int(due)], dtype=torch.int32, device=self.device)
        if torch.distributed.is_initialized():
            torch.distributed.broadcast(flag, src=0)
        return bool(flag.item())


class LossWindow:
    """The training loss since the last logged step, summed on the device (one host sync per
    log interval, not per step); a window a checkpoint kept goes on after a resume."""

    def __init__(self, progress: dict[str, Any], rank: int, device):
        self.loss, self.micro = restored_loss_window(progress, rank, device)
        self.started, self.first_step = time.perf_counter(), progress["global_step"]

    def add(self, loss: torch.Tensor) -> None:
        self.loss += loss.detach().float()
        self.micro += 1

    def close(self, step: int) -> tuple[float, float]:
        """The mean loss over all ranks and the seconds since the window opened; opens the next."""
        mean_loss = _mean_across_ranks(self.loss / self.micro)
        elapsed = time.perf_counter() - self.started
        self.loss.zero_()
        self.micro, self.started, self.first_step = 0, time.perf_counter(), step
        return mean_loss, elapsed

    def record(self, step: int) -> dict[str, Any]:
        """For the checkpoint's progress record (a collective: every rank calls it)."""
        return loss_window_record(self.loss, self.micro, step)


def log_step(job: PhaseJob, engine, window: LossWindow, step: int, geometry: BatchGeometry, progress: dict, rank: int, world_size: int) -> dict[str, float]:
    """A log step's metrics (the window's mean loss, learning rate, throughput, epoch) and rank 0's line."""
    first_step = window.first_step
    mean_loss, elapsed = window.close(step)
    metrics = {
        "train.loss": mean_loss,
        "train.learning_rate": engine.get_lr()[0],
        "train.samples_per_sec": (step - first_step) * geometry.global_batch(world_size) / max(elapsed, 1e-9),
        "train.epoch": step / geometry.steps_per_epoch,
    }
    progress["losses"].append([step, mean_loss])
    if rank == 0:
        print(
            f"[{job.phase_id}] step {step}/{geometry.total_steps} epoch {metrics['train.epoch']:.2f} "
            f"loss {mean_loss:.4f} lr {metrics['train.learning_rate']:.2e} "
            f"{metrics['train.samples_per_sec']:.1f} samples/s",
            flush=True,
        )
    return metrics


def train_micro_batch(engine, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Forward, backward and DeepSpeed's step (an optimizer step at each accumulation boundary)."""
    batch = {k: v.to(engine.device, non_blocking=True) for k, v in batch.items()}
    loss = engine(**batch).loss
    engine.backward(loss)
    engine.step()
    return loss


def run_loop(job: PhaseJob, engine, batches: Iterator[dict], geometry: BatchGeometry, progress: dict, rank: int, world_size: int, validator=None) -> None:
    """Optimizer steps until ``total_steps`` (or early stopping); a log line and metrics every
    ``log_every_n_steps``; English-dev validation every ``eval_every_n_steps`` (``validator``); a
    checkpoint at each epoch end (or every N steps), after each validation and every
    ``checkpoint_every_minutes`` (``CheckpointClock``). The final checkpoint is the caller's."""
    training = job.training
    sink = MetricsSink.for_job(job, rank)  # never waits for MLflow
    checkpoint_every = training.checkpoint_every_n_steps or geometry.steps_per_epoch
    clock = CheckpointClock(training.checkpoint_every_minutes, rank, engine.device)
    step = progress["global_step"]
    window = LossWindow(progress, rank, engine.device)
    engine.train()
    for batch in batches:
        if step >= geometry.total_steps:
            break
        window.add(train_micro_batch(engine, batch))
        if window.micro % geometry.accumulation_steps:
            continue
        step += 1
        progress["global_step"] = step
        metrics: dict[str, float] = {}
        if step % training.log_every_n_steps == 0 or step == geometry.total_steps:
            metrics = log_step(job, engine, window, step, geometry, progress, rank, world_size)
        validated = validator is not None and validator.due(step)
        stop = False
        if validated:
            metrics.update(validator.validate(step))
            stop = validator.should_stop()
            window.started = time.perf_counter()  # validation time is not training throughput
        sink.log(step, metrics)
        if step == geometry.total_steps or stop:
            break
        timed = step % training.log_every_n_steps == 0 and clock.due()  # every rank asks at the same steps
        if step % checkpoint_every == 0 or timed or validated:
            progress[LOSS_WINDOW] = window.record(step)
            save_and_report(engine, {"global_step": step, **metrics}, progress, rank)
            clock.restart()
        # No Ray report between checkpoints: the metrics are in MLflow already, and each
        # ray.train.report is a barrier of all ranks through an actor that then waits for the
        # controller's next poll (every 2 s) when the previous report is still queued.
    sink.close()


def _mean_across_ranks(value: torch.Tensor) -> float:
    """One host sync per log interval, not per step."""
    value = value.detach().clone()
    if torch.distributed.is_initialized():
        torch.distributed.all_reduce(value)
        value /= torch.distributed.get_world_size()
    return float(value.item())
