"""What the driver hands to the workers that evaluate a model zero-shot: plain, picklable,
fully resolved settings (no spec objects)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from xit_dist.data.perturb import PerturbationOptions
from xit_dist.tasks.formats.options import FormatOptions


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
