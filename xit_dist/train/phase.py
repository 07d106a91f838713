"""Run one training phase as a Ray Train ``TorchTrainer`` (Train V2), then consolidate its
final DeepSpeed checkpoint into the phase directory. A phase already done is not rerun;
an interrupted one resumes from its last checkpoint (same Ray run name and storage path).

A phase is done when its record (``phase.json``) exists, and the record is written last. When
``output_dir`` is a bucket, the phase directory given here is this node's mirror of the bucket's
(tracking/object_files.py): the outputs are consolidated there, uploaded, then the record is
uploaded, so an upload cut halfway leaves a phase that is not done (and is redone); the phase
lock is then a lease in the bucket (tracking/lease.py)."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xit_dist.console import say
from xit_dist.tracking import object_files
from xit_dist.tracking.locks import phase_lock
from xit_dist.train.job import PhaseJob

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
    """The phase's record if it is done (read from the bucket when ``phase_dir`` mirrors one)."""
    text = object_files.read_kept_text(phase_dir / DONE_FILE)
    return json.loads(text) if text is not None else None


@contextlib.contextmanager
def training_lock(phase_dir: Path, phase_id: str) -> Iterator[None]:
    """One trainer per phase across drivers: ``flock`` in a shared directory, a lease in a bucket."""
    remote = object_files.uri_of_mirror(phase_dir)
    if remote is None:
        with phase_lock(phase_dir, phase_id, say):
            yield
        return
    from xit_dist.tracking.lease import phase_lease

    with phase_lease(remote, phase_id, say):
        yield


def output_subdir(phase_dir: Path, saves: str) -> Path:
    return phase_dir / saves


def run_phase(job: PhaseJob, saves: str, phase_dir: Path, resources: PhaseResources, callbacks: tuple = ()) -> PhaseOutcome:
    """``callbacks``: Ray Train callbacks of the run (a search trial forwards reports to Tune).
    Only one process trains a phase at a time (``phase_lock``); another one waits and reuses it."""
    record = completed_record(phase_dir)
    if record is not None:
        return PhaseOutcome(record, output_subdir(phase_dir, saves), reused=True)
    with training_lock(phase_dir, job.phase_id):
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
    init_dir = object_files.local_copy(job.init_dir)
    with result.checkpoint.as_directory() as checkpoint_dir:
        record = consolidate(Path(checkpoint_dir), init_dir, job.tokenizer_dir, job.task, saves, staging, job.model_revision)
    object_files.forget_copy(out_dir)
    staging.rename(out_dir)
    record.update(phase_id=job.phase_id, task=job.task, init_dir=job.init_dir, checkpoint=result.checkpoint.path)
    done = phase_dir / DONE_FILE
    done.write_text(json.dumps(record, indent=2))
    publish_outputs(out_dir, done)
    return PhaseOutcome(record, out_dir, reused=False)


def publish_outputs(out_dir: Path, done: Path) -> None:
    """In a bucket: the outputs uploaded, then the record (what makes the phase done)."""
    if object_files.uri_of_mirror(done) is None:
        return
    object_files.publish_tree(out_dir)
    object_files.mark_copied(out_dir)
    object_files.publish_file(done)
