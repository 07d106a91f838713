"""What a task is: where each split lives on the hub (or in a local mirror of it), in which
schema, and which format (head, featurisation, metric) handles it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class PairColumns:
    """Which columns of a hub data set hold the two texts and the label.

    ``label_values`` lists the raw label values in class-id order when the hub stores labels
    as strings (XNLI's ``gold_label``, PAWS-X's ``"0"/"1"``); ``None`` when they are class ids.
    """

    text_a: str
    text_b: str | None
    label: str
    label_values: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DataSource:
    """One split of one hub data set, optionally restricted to one language.

    ``schema`` gives the hub's column types (``"string"``, ``"int32"``, ``"int64"`` or
    ``("classlabel", names)``): local files are cast to exactly these types, so a local
    mirror and the hub produce the same rows.
    """

    hub_id: str
    config: str | None
    split: str
    columns: PairColumns
    schema: dict[str, object]
    language_column: str | None = None
    language: str | None = None

    def describe(self) -> str:
        config = f"[{self.config}]" if self.config else ""
        where = f" where {self.language_column}={self.language}" if self.language_column else ""
        return f"{self.hub_id}{config} split {self.split}{where}"


@dataclass(frozen=True)
class Task:
    """A registered task. ``train`` is the English training data as the benchmark defines it
    (XNLI trains on MNLI); ``eval_source(split, lang)`` gives each language's evaluation data."""

    name: str
    format: str
    description: str
    label_names: tuple[str, ...]
    languages: tuple[str, ...]
    train: DataSource | None
    dev: DataSource | None
    eval_source: Callable[[str, str], DataSource] = field(repr=False)
    eval_splits: tuple[str, ...] = ("validation", "test")
    metric: str = "accuracy"

    @property
    def num_labels(self) -> int:
        return len(self.label_names)
