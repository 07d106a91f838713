"""What the driver hands to each Ray worker: plain, picklable, fully resolved settings
(paths already resolved, no spec objects), so a worker never re-reads the user's files."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class EvalJob(BaseModel):
    phase_id: str
    task: str
    model_dir: str | None              # None: the live model at the end of the target phase
    data_dir: str | None
    data_revision: str | None
    split: Literal["validation", "test"]
    languages: list[str]
    batch_size: int
    max_seq_length: int
    max_examples_per_language: int | None
    bf16: bool
    cpus_per_worker: float


class PhaseJob(BaseModel):
    phase_id: str
    phase_dir: str                     # shared storage: the phase's outputs and best weights
    task: str
    init_dir: str                      # model to start from: hub id / directory / upstream encoder
    tokenizer_dir: str
    data_dir: str | None               # local mirror; None = hub
    data_revision: str | None
    training: dict[str, Any]           # TrainingConfig, dumped
    seed: int
    ds_config: dict[str, Any]          # unfilled ("auto" values left)
    bf16: bool
    cpus_per_worker: float
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None
    evaluation: EvalJob | None = None  # target phase: evaluate before the final checkpoint
