"""The training loop that runs on every Ray Train worker: build the model, hand it to
``deepspeed.initialize``, train, send metrics to MLflow and DeepSpeed checkpoints to Ray.

Device- and backend-agnostic: the same code runs on CPU/gloo in tests and on GPU/NCCL.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from xit_dist.train.job import PhaseJob
from xit_dist.train.metrics_sink import LOSS_WINDOW, MetricsSink, loss_window_record, restored_loss_window

CHECKPOINT_TAG = "ds"           # DeepSpeed's tag: files live in <checkpoint>/ds/
PROGRESS_FILE = "progress.json"  # rank 0's record of where training stood


@dataclass
class BatchGeometry:
    micro_batch_size: int
    accumulation_steps: int
    steps_per_epoch: int
    total_steps: int


def configure_threads(cpus_per_worker: float) -> None:
    """One intra-op thread per CPU Ray gave this worker: more only oversubscribes the cores."""
    if not torch.cuda.is_available():
        torch.set_num_threads(max(1, int(cpus_per_worker)))


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def batch_geometry(training: dict[str, Any], world_size: int, micro_batches_per_epoch: int) -> BatchGeometry:
    micro = training["micro_batch_size"] or training["batch_size"] // world_size
    accumulation = training["batch_size"] // (micro * world_size)
    steps_per_epoch = micro_batches_per_epoch // accumulation
    if steps_per_epoch < 1:
        raise ValueError(
            f"training set too small for one step: {micro_batches_per_epoch} micro batches per worker, "
            f"{accumulation} per step"
        )
    total = math.ceil(training["epochs"] * steps_per_epoch)
    if training["max_steps"]:
        total = min(total, training["max_steps"])
    return BatchGeometry(micro, accumulation, steps_per_epoch, total)


def build_train_loader(job: PhaseJob, tokenizer, rank: int, world_size: int):
    """Each rank's shard of the training features, padded per micro batch by the format's collator."""
    from torch.utils.data import DataLoader, DistributedSampler

    from xit_dist.data.features import training_features
    from xit_dist.tasks import get_task
    from xit_dist.tasks.formats import get_format

    task = get_task(job.task)
    features = training_features(
        task, tokenizer, job.options, job.data_dir, job.data_revision, limit=job.training["max_train_examples"], stage=job.stage
    )
    micro = job.training["micro_batch_size"] or job.training["batch_size"] // world_size
    sampler = DistributedSampler(features, num_replicas=world_size, rank=rank, shuffle=True, seed=job.seed, drop_last=True)
    loader = DataLoader(
        features,
        batch_size=micro,
        sampler=sampler,
        collate_fn=get_format(task.format).collator(tokenizer),
        drop_last=True,
        pin_memory=torch.cuda.is_available(),
    )
    return loader, sampler


def build_model(job: PhaseJob, ds_config: dict[str, Any], mixture=None):
    """The task's model with the starting encoder and a fresh head (a mixture: one head per
    member on a shared encoder). Under ZeRO-3 it is built already partitioned
    (``HfDeepSpeedConfig`` must stay alive until ``initialize``)."""
    from xit_dist.tasks import get_task
    from xit_dist.tasks.formats import get_format
    from xit_dist.train.ds_config import zero_stage

    keep_alive = None
    if zero_stage(ds_config) == 3:
        from transformers.integrations import HfDeepSpeedConfig

        keep_alive = HfDeepSpeedConfig(ds_config)
    if mixture is not None:
        return mixture.build_model(), keep_alive
    task = get_task(job.task)
    fmt = get_format(task.format)
    model = fmt.model_class().from_pretrained(job.init_dir, revision=job.model_revision, **fmt.label_config(task))
    return model, keep_alive


def build_optimizer(model, training: dict[str, Any], total_steps: int):
    """AdamW with no decay on biases and LayerNorm weights, and linear warm-up then decay
    (the recipe of the paper's jiant scripts)."""
    from transformers import get_linear_schedule_with_warmup

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": training["weight_decay"]},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=training["learning_rate"], eps=training["adam_epsilon"])
    warmup = int(training["warmup_ratio"] * total_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    return optimizer, scheduler


def save_and_report(engine, metrics: dict[str, Any], progress: dict[str, Any], rank: int) -> None:
    """Every rank writes its DeepSpeed shards, RNG state and manifest; Ray merges the ranks'
    directories into one checkpoint in storage."""
    import ray.train

    with tempfile.TemporaryDirectory(prefix="xit-ckpt-") as tmp:
        write_checkpoint(engine, Path(tmp), progress, rank)
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(tmp),
            checkpoint_dir_name=checkpoint_name(progress),
        )


def write_checkpoint(engine, directory: Path, progress: dict[str, Any], rank: int) -> None:
    """This rank's part of a checkpoint, its manifest (content hashes) last."""
    from xit_dist.train.checkpoint_manifest import write_manifest

    engine.save_checkpoint(str(directory), tag=CHECKPOINT_TAG)
    torch.save(rng_state(), directory / f"rng_rank{rank}.pt")
    if rank == 0:
        (directory / PROGRESS_FILE).write_text(json.dumps(progress, indent=2))
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    write_manifest(directory, rank, world_size)


def checkpoint_name(progress: dict[str, Any]) -> str:
    """``step-<step>``; after a fallback to an older checkpoint, with the fallback's suffix: the
    damaged checkpoints are still in Ray's list, and Ray deletes an evicted checkpoint by its path."""
    fallbacks = progress.get("checkpoint_fallbacks") or [{}]
    return f"step-{progress['global_step']:08d}{fallbacks[-1].get('suffix', '')}"


def rng_state() -> dict[str, Any]:
    import random

    import numpy as np

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def pick_checkpoint(rank: int, phase_id: str) -> tuple[str | None, dict[str, Any] | None]:
    """The checkpoint to resume from: the last one Ray holds for this phase (after a worker
    failure or an interrupted run) if its manifest holds, else the newest intact older one, said
    in one line naming the damaged file. Rank 0 reads and hashes; every rank gets its answer.
    Returns the directory (None: start from step 0) and, after a fallback, its record."""
    import ray.train

    from xit_dist.train.checkpoint_manifest import newest_intact

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None, None
    answer: list[Any] = [None, None]
    if rank == 0:
        chosen, damaged = newest_intact(Path(checkpoint.path))  # storage_path is a local (or mounted) directory
        fallback = None
        if damaged:
            fallback = {
                "damaged": {path.name: problem for path, problem in damaged},
                "resumed_from": chosen.name if chosen else None,
                "suffix": f"-r{int(time.time())}",
            }
            then = f"resuming from {chosen.name}" if chosen else "no intact checkpoint left: training from step 0"
            bad = "; ".join(f"{path}/{problem}" for path, problem in damaged)
            print(f"[{phase_id}] damaged checkpoint file {bad}; {then}", flush=True)
        answer = [str(chosen) if chosen else None, fallback]
    if torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(answer, src=0)
    return answer[0], answer[1]


def resume_from_checkpoint(engine, rank: int, directory: str | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Restores model, optimizer and scheduler from ``directory`` (``pick_checkpoint``); returns
    the progress record and this rank's RNG state, which the loop restores once it is back at
    the same data position."""
    if directory is None:
        return None
    engine.load_checkpoint(directory, tag=CHECKPOINT_TAG, load_optimizer_states=True, load_lr_scheduler_states=True)
    progress = json.loads((Path(directory) / PROGRESS_FILE).read_text())
    rng = torch.load(Path(directory) / f"rng_rank{rank}.pt", weights_only=False)
    return progress, rng


def train_phase_worker(config: dict[str, Any]) -> None:
    """Entry point of every worker (``TorchTrainer(train_loop_per_worker=...)``)."""
    from xit_dist.console import quiet_third_party
    from xit_dist.train.toolchain import interpreter_bin_first

    quiet_third_party()  # before deepspeed is imported
    interpreter_bin_first()  # the ninja DeepSpeed builds its ops with
    import deepspeed
    import ray.train
    from transformers import AutoConfig, AutoTokenizer

    from xit_dist.train.ds_config import fill_auto, zero_stage
    from xit_dist.train.fingerprint import module_fingerprint

    started = time.perf_counter()
    job = PhaseJob.model_validate(config)
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    configure_threads(job.cpus_per_worker)
    seed_everything(job.seed)
    deepspeed.init_distributed(dist_backend=torch.distributed.get_backend())

    tokenizer = AutoTokenizer.from_pretrained(job.tokenizer_dir, revision=job.model_revision)
    mixture, loader, sampler = None, None, None
    if job.stage is not None and job.stage.is_mixture:
        from xit_dist.train.multitask import Mixture

        mixture = Mixture.build(job, tokenizer, rank, world_size)
    else:
        loader, sampler = build_train_loader(job, tokenizer, rank, world_size)
    geometry = batch_geometry(job.training, world_size, mixture.micro_batches_per_epoch if mixture else len(loader))
    hidden_size = AutoConfig.from_pretrained(job.init_dir, revision=job.model_revision).hidden_size
    ds_config = fill_auto(
        job.ds_config,
        micro_batch_size=geometry.micro_batch_size,
        gradient_accumulation_steps=geometry.accumulation_steps,
        world_size=world_size,
        learning_rate=job.training["learning_rate"],
        weight_decay=job.training["weight_decay"],
        adam_epsilon=job.training["adam_epsilon"],
        max_grad_norm=job.training["max_grad_norm"],
        bf16=job.bf16,
        hidden_size=hidden_size,
    )
    model, _keep_zero3_config = build_model(job, ds_config, mixture)
    optimizer, scheduler = build_optimizer(model, job.training, geometry.total_steps)
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config, dist_init_required=False
    )
    init_fingerprint, _ = module_fingerprint(engine.module.base_model, compute=rank == 0)  # rank 0 writes the record

    directory, fallback = pick_checkpoint(rank, job.phase_id)
    resumed = resume_from_checkpoint(engine, rank, directory)
    progress, rng = resumed or ({"global_step": 0, "init_encoder_fingerprint": init_fingerprint, "losses": []}, None)
    if resumed:
        progress.setdefault("resumed_from_steps", []).append(progress["global_step"])
    if fallback:  # in the phase record; its suffix names this attempt's checkpoints (checkpoint_name)
        progress.setdefault("checkpoint_fallbacks", []).append(fallback)
    if loader is not None:  # what it trains on, after subsampling and augmentation: one feature per row
        progress["train_features"] = len(loader.dataset)  # (a QA window each); a mixture records its members' sizes
    if rank == 0:  # rows the format dropped, per training split (preflight said them too)
        from xit_dist.data.drops import phase_drop_record

        progress["dropped_rows"] = phase_drop_record(job)
    # the Ray node of every rank, in rank order (lands in the phase record, phase.json)
    node_ids: list[str | None] = [None] * world_size
    torch.distributed.all_gather_object(node_ids, ray.get_runtime_context().get_node_id())
    progress["worker_nodes"] = node_ids
    if rank == 0:
        resumed_note = f", resumed at step {progress['global_step']}" if resumed else ""
        print(
            f"[{job.phase_id}] ready in {time.perf_counter() - started:.1f}s: {world_size} workers, "
            f"ZeRO-{zero_stage(ds_config)}, {geometry.total_steps} steps of {geometry.micro_batch_size * geometry.accumulation_steps * world_size}"
            f"{resumed_note}",
            flush=True,
        )
    validator = None
    if job.training["eval_every_n_steps"]:
        from xit_dist.train.validation import DevValidator

        validator = DevValidator(job, engine, tokenizer, progress, rank, world_size)
    batches = None
    if mixture is not None:
        mixture.start(engine, progress, rank)
        batches = mixture.micro_batches(progress, geometry.accumulation_steps, rng)
    run_loop(job, engine, loader, sampler, geometry, progress, rank, world_size, rng, validator, batches)
    if mixture is not None:
        mixture.finish(engine, progress, rank)
    if validator is not None:
        validator.restore_best()
    if job.evaluation is not None:
        from xit_dist.evaluate.zero_shot import evaluate_languages

        progress["evaluation"] = evaluate_languages(engine.module, tokenizer, job.evaluation, rank, world_size, engine.device)

    final_fingerprint, dtype = module_fingerprint(engine.module.base_model, compute=rank == 0)
    progress.update(
        final_engine_fingerprint=final_fingerprint,
        engine_dtype=str(dtype).removeprefix("torch."),
        zero_stage=zero_stage(ds_config),
        world_size=world_size,
        total_steps=geometry.total_steps,
        finished=True,
    )
    # the kept weights' English-dev score: what a search trial is judged by
    kept = validator.kept_metrics() if validator is not None else {}
    save_and_report(engine, {"global_step": progress["global_step"], "finished": 1, **kept}, progress, rank)


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


def run_loop(job, engine, loader, sampler, geometry: BatchGeometry, progress: dict, rank: int, world_size: int, rng=None, validator=None, batches=None) -> None:
    """Optimizer steps until ``total_steps`` (or early stopping); a log line and metrics every
    ``log_every_n_steps``; English-dev validation every ``eval_every_n_steps``; a checkpoint at
    each epoch end (or every N steps), after each validation and every ``checkpoint_every_minutes``
    (``CheckpointClock``). ``batches``: the micro batches of a mixture phase (``multitask.Mixture``)
    instead of ``loader``'s."""
    training = job.training
    sink = MetricsSink.for_job(job, rank)  # never waits for MLflow
    global_batch = geometry.micro_batch_size * geometry.accumulation_steps * world_size
    log_every = training["log_every_n_steps"]
    checkpoint_every = training["checkpoint_every_n_steps"] or geometry.steps_per_epoch
    clock = CheckpointClock(training["checkpoint_every_minutes"], rank, engine.device)
    step = progress["global_step"]
    window_loss, window_micro = restored_loss_window(progress, rank, engine.device)  # a resumed window goes on
    window_start, window_first_step = time.perf_counter(), step
    engine.train()
    for batch in batches if batches is not None else micro_batches(loader, sampler, geometry, step, rng):
        if step >= geometry.total_steps:
            break
        batch = {k: v.to(engine.device, non_blocking=True) for k, v in batch.items()}
        loss = engine(**batch).loss
        engine.backward(loss)
        engine.step()
        window_loss += loss.detach().float()
        window_micro += 1
        if window_micro % geometry.accumulation_steps:
            continue
        step += 1
        progress["global_step"] = step
        metrics: dict[str, float] = {}
        if step % log_every == 0 or step == geometry.total_steps:
            mean_loss = _mean_across_ranks(window_loss / window_micro)
            elapsed = time.perf_counter() - window_start
            metrics = {
                "train.loss": mean_loss,
                "train.learning_rate": engine.get_lr()[0],
                "train.samples_per_sec": (step - window_first_step) * global_batch / max(elapsed, 1e-9),
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
            window_loss.zero_()
            window_micro, window_start, window_first_step = 0, time.perf_counter(), step
        stop = False
        if validator is not None and validator.due(step):
            metrics.update(validator.validate(step))
            stop = validator.should_stop()
            window_start = time.perf_counter()  # validation time is not training throughput
        sink.log(step, metrics)
        if step == geometry.total_steps or stop:
            break  # the final checkpoint is written by the caller
        timed = step % log_every == 0 and clock.due()  # every rank asks at the same steps
        if step % checkpoint_every == 0 or timed or (validator is not None and validator.due(step)):
            progress[LOSS_WINDOW] = loss_window_record(window_loss, window_micro, step)
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

