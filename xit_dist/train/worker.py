"""What every Ray Train worker of a training phase does, as named steps: join the worker group,
build the training data, set up the DeepSpeed engine, resume, train, evaluate (target phase),
finish with the final checkpoint. Metrics go to MLflow, checkpoints to Ray.

Device- and backend-agnostic: the same code runs on CPU/gloo in tests and on GPU/NCCL.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from xit_dist.evaluate.zero_shot import configure_threads
from xit_dist.train.checkpoint import latest_checkpoint, pick_checkpoint, resume_from_checkpoint, save_and_report
from xit_dist.train.engine import BatchGeometry, TrainingEngine, set_up_engine
from xit_dist.train.job import PhaseJob
from xit_dist.train.loop import build_train_loader, micro_batches, run_loop
from xit_dist.train.multitask import Mixture
from xit_dist.train.system_metrics import node_system_metrics
from xit_dist.train.validation import DevValidator


@dataclass
class TrainingData:
    """A single-task phase's loader and sampler, or a mixture phase's members."""

    loader: Any = None
    sampler: Any = None
    mixture: Mixture | None = None
    datasets: list[dict] | None = None   # rank 0: what was read, per source (data.dataset_records)

    @property
    def micro_batches_per_epoch(self) -> int:
        return self.mixture.micro_batches_per_epoch if self.mixture is not None else len(self.loader)

    def batches(self, progress: dict[str, Any], geometry: BatchGeometry, rng) -> Iterator[dict]:
        """The micro batches from the step ``progress`` stands at (``rng``: a checkpoint's RNG state)."""
        if self.mixture is not None:
            return self.mixture.micro_batches(progress, geometry.accumulation_steps, rng)
        return micro_batches(self.loader, self.sampler, geometry, progress["global_step"], rng)


def train_phase_worker(config: dict[str, Any]) -> None:
    """Entry point of every worker (``TorchTrainer(train_loop_per_worker=...)``)."""
    prepare_process()
    started = time.perf_counter()
    job = node_local(PhaseJob.model_validate(config))
    rank, world_size = join_worker_group(job)
    tokenizer = load_tokenizer(job)
    data = build_data(job, tokenizer, rank, world_size)
    setup = set_up_engine(job, data.micro_batches_per_epoch, data.mixture, rank, world_size)
    progress, rng = start_progress(job, setup, data, rank, world_size)
    if rank == 0:
        say_ready(job, setup, progress, started, world_size)
    validator = DevValidator(job, setup.engine, tokenizer, progress, rank, world_size) if job.training.eval_every_n_steps else None
    with node_system_metrics(job):
        train(job, setup, data, progress, rng, validator, rank, world_size)
        evaluate(job, setup.engine, tokenizer, progress, rank, world_size)
        finish(setup, progress, validator, rank, world_size)


def prepare_process() -> None:
    """Quiet third-party logs and put the interpreter's bin (the ninja DeepSpeed builds its ops
    with) first on PATH, both before DeepSpeed is imported; then import it (not counted as setup time)."""
    from xit_dist.console import quiet_third_party
    from xit_dist.train.toolchain import interpreter_bin_first

    quiet_third_party()
    interpreter_bin_first()
    importlib.import_module("deepspeed")


def node_local(job: PhaseJob) -> PhaseJob:
    """The job with the upstream encoder it starts from on this node (a bucket's encoder is
    downloaded once per node; a local or shared directory, or a hub id, is read where it is)."""
    from xit_dist.tracking.object_files import local_copy

    return job.model_copy(update={"init_dir": local_copy(job.init_dir)})


def join_worker_group(job: PhaseJob) -> tuple[int, int]:
    """This worker's rank and the group's size; threads, seeds and DeepSpeed's process group set."""
    import deepspeed
    import ray.train

    context = ray.train.get_context()
    configure_threads(job.cpus_per_worker)
    seed_everything(job.seed)
    deepspeed.init_distributed(dist_backend=torch.distributed.get_backend())
    return context.get_world_rank(), context.get_world_size()


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_tokenizer(job: PhaseJob):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(job.tokenizer_dir, revision=job.model_revision)


def build_data(job: PhaseJob, tokenizer, rank: int, world_size: int) -> TrainingData:
    """This rank's shard of the training features (of every member, in a mixture phase); rank 0
    also keeps the record of what it read, for the phase's MLflow run."""
    records = [] if rank == 0 else None
    if job.stage is not None and job.stage.is_mixture:
        return TrainingData(mixture=Mixture.build(job, tokenizer, rank, world_size, records), datasets=records)
    loader, sampler = build_train_loader(job, tokenizer, rank, world_size, records)
    return TrainingData(loader, sampler, datasets=records)


def start_progress(job: PhaseJob, setup: TrainingEngine, data: TrainingData, rank: int, world_size: int) -> tuple[dict[str, Any], Any]:
    """The progress record training starts from (a resumed checkpoint's, or a fresh one) with
    what this attempt adds to the phase record; and the RNG state to restore (None: fresh)."""
    with latest_checkpoint() as (latest, look_back):
        directory, fallback = pick_checkpoint(rank, job.phase_id, latest, look_back)
        resumed = resume_from_checkpoint(setup.engine, rank, directory)
    progress, rng = resumed or ({"global_step": 0, "init_encoder_fingerprint": setup.init_fingerprint, "losses": []}, None)
    if resumed:
        progress.setdefault("resumed_from_steps", []).append(progress["global_step"])
    if fallback:  # in the phase record; its suffix names this attempt's checkpoints (checkpoint_name)
        progress.setdefault("checkpoint_fallbacks", []).append(fallback)
    if data.loader is not None:  # what it trains on, after subsampling and augmentation: one feature per row
        progress["train_features"] = len(data.loader.dataset)  # (a QA window each); a mixture records its members' sizes
    if rank == 0:  # rows the format dropped, per training split (preflight said them too); what was read
        from xit_dist.data.drops import phase_drop_record

        progress["dropped_rows"] = phase_drop_record(job)
        progress["datasets"] = data.datasets
    progress["worker_nodes"] = worker_nodes(world_size)  # lands in the phase record, phase.json
    return progress, rng


def worker_nodes(world_size: int) -> list[str | None]:
    """The Ray node of every rank, in rank order (a collective)."""
    import ray

    node_ids: list[str | None] = [None] * world_size
    torch.distributed.all_gather_object(node_ids, ray.get_runtime_context().get_node_id())
    return node_ids


def say_ready(job: PhaseJob, setup: TrainingEngine, progress: dict[str, Any], started: float, world_size: int) -> None:
    from xit_dist.config.ds_config import zero_stage

    geometry = setup.geometry
    resumed_note = f", resumed at step {progress['global_step']}" if progress.get("resumed_from_steps") else ""
    print(
        f"[{job.phase_id}] ready in {time.perf_counter() - started:.1f}s: {world_size} workers, "
        f"ZeRO-{zero_stage(setup.ds_config)}, {geometry.total_steps} steps of {geometry.global_batch(world_size)}"
        f"{resumed_note}",
        flush=True,
    )


def train(job: PhaseJob, setup: TrainingEngine, data: TrainingData, progress: dict[str, Any], rng,
          validator: DevValidator | None, rank: int, world_size: int) -> None:
    """The optimizer steps; then the weights the phase keeps (the best English-dev ones, with a validator)."""
    engine, mixture = setup.engine, data.mixture
    if mixture is not None:
        mixture.start(engine, progress, rank)
    run_loop(job, engine, data.batches(progress, setup.geometry, rng), setup.geometry, progress, rank, world_size, validator)
    if mixture is not None:
        mixture.finish(engine, progress, rank)
    if validator is not None:
        validator.restore_best()


def evaluate(job: PhaseJob, engine, tokenizer, progress: dict[str, Any], rank: int, world_size: int) -> None:
    """A target phase: zero-shot evaluation of the kept weights on the live engine, into the phase record."""
    if job.evaluation is None:
        return
    from xit_dist.evaluate.zero_shot import evaluate_languages

    progress["evaluation"] = evaluate_languages(engine.module, tokenizer, job.evaluation, rank, world_size, engine.device)


def finish(setup: TrainingEngine, progress: dict[str, Any], validator: DevValidator | None, rank: int, world_size: int) -> None:
    """The final checkpoint: the engine's final fingerprint in the progress record, and the kept
    weights' English-dev score in the report (what a search trial is judged by)."""
    from xit_dist.config.ds_config import zero_stage
    from xit_dist.train.fingerprint import module_fingerprint

    engine = setup.engine
    final_fingerprint, dtype = module_fingerprint(engine.module.base_model, compute=rank == 0)
    progress.update(
        final_engine_fingerprint=final_fingerprint,
        engine_dtype=str(dtype).removeprefix("torch."),
        zero_stage=zero_stage(setup.ds_config),
        world_size=world_size,
        total_steps=setup.geometry.total_steps,
        finished=True,
    )
    kept = validator.kept_metrics() if validator is not None else {}
    save_and_report(engine, {"global_step": progress["global_step"], "finished": 1, **kept}, progress, rank)
