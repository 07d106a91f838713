"""What the driver hands to each Ray worker of a training phase: typed, picklable, fully
resolved settings (paths already resolved; the phase's ``TrainingConfig`` as the spec holds it),
so a worker never re-reads the user's files and reads attributes, not string keys."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from xit_dist.config.spec import TrainingConfig
from xit_dist.data.stage_data import StageData
from xit_dist.evaluate.job import EvalJob
from xit_dist.tasks.formats.options import FormatOptions


class PhaseJob(BaseModel):
    phase_id: str
    phase_dir: str                     # the phase's outputs: a shared directory, or a bucket URI
    task: str
    init_dir: str                      # model to start from: hub id / directory / upstream encoder
    tokenizer_dir: str
    model_revision: str | None = None  # hub revision of the base model (ignored for local directories)
    data_dir: str | None               # local mirror; None = hub
    data_revision: str | None
    training: TrainingConfig           # the phase's training settings (a dumped one validates too)
    options: FormatOptions             # featurisation settings (from the training config)
    seed: int
    ds_config: dict[str, Any]          # unfilled ("auto" values left)
    bf16: bool
    cpus_per_worker: float
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None
    system_metrics_interval_s: float = 0.0   # MLflow system metrics of each node, every so many seconds (0: off)
    evaluation: EvalJob | None = None  # target phase: evaluate before the final checkpoint
    stage: StageData | None = None     # intermediate stages: subsample, augmentation, languages, mixture
