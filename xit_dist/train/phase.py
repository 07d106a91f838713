"""Run one training phase as a Ray Train ``TorchTrainer`` (Train V2), then consolidate its
final DeepSpeed checkpoint into the phase directory. A phase already done is not rerun;
an interrupted one resumes from its last checkpoint (same Ray run name and storage path)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xit_dist.console import say
from xit_dist.train.job import PhaseJob
from xit_dist.tracking.locks import phase_lock

DONE_FILE = "phase.json"


@dataclass
class PhaseResources:
    num_workers: int
    use_gpu: bool
    cpus_per_worker: float
    max_failures: int
    storage_path: str


@dataclass
class PhaseOutcome:
    record: dict[str, Any]
    output_dir: Path
    reused: bool


def completed_record(phase_dir: Path) -> dict[str, Any] | None:
    done = phase_dir / DONE_FILE
    return json.loads(done.read_text()) if done.is_file() else None


def output_subdir(phase_dir: Path, saves: str) -> Path:
    return phase_dir / saves


def run_phase(job: PhaseJob, saves: str, phase_dir: Path, resources: PhaseResources, callbacks: tuple = ()) -> PhaseOutcome:
    """``callbacks``: Ray Train callbacks of the run (a search trial forwards reports to Tune).
    Only one process trains a phase at a time (``phase_lock``); another one waits and reuses it."""
    record = completed_record(phase_dir)
    if record is not None:
        return PhaseOutcome(record, output_subdir(phase_dir, saves), reused=True)
    with phase_lock(phase_dir, job.phase_id, say):
        record = completed_record(phase_dir)  # done by the process we waited for
        if record is not None:
            return PhaseOutcome(record, output_subdir(phase_dir, saves), reused=True)
        return _train(job, saves, phase_dir, resources, callbacks)


def _train(job: PhaseJob, saves: str, phase_dir: Path, resources: PhaseResources, callbacks: tuple) -> PhaseOutcome:
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from xit_dist.train.consolidate import consolidate
    from xit_dist.train.worker import train_phase_worker

    trainer = TorchTrainer(
        train_phase_worker,
        train_loop_config=job.model_dump(),
        torch_config=TorchConfig(backend="nccl" if resources.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=resources.num_workers,
            use_gpu=resources.use_gpu,
            resources_per_worker={"CPU": resources.cpus_per_worker, **({"GPU": 1} if resources.use_gpu else {})},
        ),
        run_config=RunConfig(
            name=job.phase_id,
            storage_path=resources.storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            failure_config=FailureConfig(max_failures=resources.max_failures),
            logging_config=LoggingConfig(log_level="WARNING"),
            callbacks=list(callbacks),
        ),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"phase {job.phase_id} finished without a checkpoint")
    out_dir = output_subdir(phase_dir, saves)
    staging = phase_dir / f".{saves}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    with result.checkpoint.as_directory() as checkpoint_dir:
        record = consolidate(Path(checkpoint_dir), job.init_dir, job.tokenizer_dir, job.task, saves, staging, job.model_revision)
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    record.update(phase_id=job.phase_id, task=job.task, init_dir=job.init_dir, checkpoint=result.checkpoint.path)
    (phase_dir / DONE_FILE).write_text(json.dumps(record, indent=2))
    return PhaseOutcome(record, out_dir, reused=False)
