"""What the driver hands to each Ray worker: plain, picklable, fully resolved settings
(paths already resolved, no spec objects), so a worker never re-reads the user's files."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from xit_dist.data.augment import AugmentOptions
from xit_dist.data.mlm import MlmOptions
from xit_dist.data.perturb import PerturbationOptions
from xit_dist.data.subsample import SubsampleOptions


class FormatOptions(BaseModel):
    """Settings a task format reads when it featurises and predicts. One object for every
    format, so that jobs, caches and hashes never need to know which format is in use."""

    max_seq_length: int = 256
    doc_stride: int = 128              # extractive QA: overlap of the windows over a long context
    max_query_length: int = 64         # extractive QA: question tokens kept
    n_best: int = 20                   # extractive QA: start/end candidates per window
    max_answer_length: int = 30        # extractive QA: longest answer span, in tokens
    retrieval_layer: int | None = None  # retrieval: hidden_states index; None = XTREME's 14 of 24, scaled to depth
    pooling: Literal["mean", "cls"] = "mean"


class LanguageData(BaseModel):
    """One training language of a multilingual stage: the task's own sources read from
    ``data_dir`` (a translated copy in the hub layout; None: where the task's data is), or, with
    ``translated``, the task's translate-train source for ``language``."""

    language: str
    data_dir: str | None = None
    translated: bool = False


class StageData(BaseModel):
    """A stage's data and mixture options, resolved by the driver (``xit_dist.data.stage``).
    ``tasks``: the registered tasks trained in the stage (several: a multi-task mixture, one
    head each on a shared encoder, see ``xit_dist.train.multitask``); ``data_dirs``: where each
    task's data is (None: the hub)."""

    tasks: list[str]
    data_dirs: dict[str, str | None]
    sampling: Literal["proportional", "uniform", "temperature"] = "proportional"
    temperature: float = 2.0
    examples_cap: int | None = None
    subsample: SubsampleOptions | None = None
    augment: AugmentOptions | None = None
    languages: list[LanguageData] = []
    mlm: MlmOptions | None = None

    @property
    def is_mixture(self) -> bool:
        return len(self.tasks) > 1 or self.mlm is not None


class EvalJob(BaseModel):
    phase_id: str
    task: str
    model_dir: str | None              # None: the live model at the end of the target phase
    model_revision: str | None = None  # hub revision when model_dir is the base model's hub id
    data_dir: str | None
    data_revision: str | None
    split: Literal["validation", "test"]
    languages: list[str]
    batch_size: int
    options: FormatOptions
    max_examples_per_language: int | None
    bf16: bool
    cpus_per_worker: float
    perturbations: list[PerturbationOptions] = []  # also evaluate perturbed copies (xit_dist.data.perturb)
    calibration: bool = False                      # ECE / Brier / reliability bins (xit_dist.evaluate.calibration)


class PhaseJob(BaseModel):
    phase_id: str
    phase_dir: str                     # shared storage: the phase's outputs and best weights
    task: str
    init_dir: str                      # model to start from: hub id / directory / upstream encoder
    tokenizer_dir: str
    model_revision: str | None = None  # hub revision of the base model (ignored for local directories)
    data_dir: str | None               # local mirror; None = hub
    data_revision: str | None
    training: dict[str, Any]           # TrainingConfig, dumped
    options: FormatOptions             # featurisation settings (from the training config)
    seed: int
    ds_config: dict[str, Any]          # unfilled ("auto" values left)
    bf16: bool
    cpus_per_worker: float
    tracking_uri: str | None = None
    mlflow_run_id: str | None = None
    evaluation: EvalJob | None = None  # target phase: evaluate before the final checkpoint
    stage: StageData | None = None     # intermediate stages: subsample, augmentation, languages, mixture
