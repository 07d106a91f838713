"""What one training stage reads, resolved by the driver (``xit_dist.data.stage``) and handed to
the workers: its tasks, where their data is, and the mixture, subsampling, augmentation,
language and MLM options."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from xit_dist.data.augment import AugmentOptions
from xit_dist.data.mlm import MlmOptions
from xit_dist.data.subsample import SubsampleOptions


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
