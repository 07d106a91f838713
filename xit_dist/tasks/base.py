"""What a task is: where each split lives on the hub (or in a local mirror of it), in which
schema, and which format (head, featurisation, metric) handles it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal


PARQUET_EXPORT = "refs/convert/parquet"  # the hub's automatic Parquet copy of a data set


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

    ``schema`` gives the hub's column types as `datasets` feature specs: ``"string"``,
    ``"int32"``, ``"int64"``, ``"float32"``, ``("classlabel", names)``, ``["string"]`` (a list
    of strings), or a dict of those (a struct such as SQuAD's ``answers``). Local files are cast
    to exactly these types, so a local mirror and the hub produce the same rows.

    ``columns`` says which columns play which role; its type belongs to the task's format
    (``PairColumns`` for pair classification, ...). Rows can be restricted to one language by
    a column equal to ``language`` (XNLI's ``language``) or starting with it (TyDiQA's ``id``,
    ``match="prefix"``).
    """

    hub_id: str
    config: str | None
    split: str
    columns: Any
    schema: dict[str, object]
    language_column: str | None = None
    language: str | None = None
    match: Literal["equals", "prefix"] = "equals"
    # The hub revision read when the spec names none: data sets still published as loading
    # scripts (which `datasets` >= 4 refuses) have a Parquet export under "refs/convert/parquet".
    default_revision: str | None = None
    # Tasks whose hub copy is unusable (BUCC without distractors, CCGbank's licence, XTREME-R's
    # release-only sets) read the original release files instead: reader(directory, source)
    # returns a `datasets.Dataset` in ``schema``; there is no hub path for them.
    reader: Callable[[Any, "DataSource"], Any] | None = field(default=None, compare=False, repr=False)
    # Where a source without a usable hub copy comes from (a reader's release files, or a config
    # only a local mirror has, such as XTREME-R's additions): said when its files are missing.
    release_hint: str | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        config = f"[{self.config}]" if self.config else ""
        operator = "=" if self.match == "equals" else " starts with "
        where = f" where {self.language_column}{operator}{self.language}" if self.language_column else ""
        return f"{self.hub_id}{config} split {self.split}{where}"


@dataclass(frozen=True)
class Task:
    """A registered task. ``train`` is the English training data as the benchmark defines it
    (XNLI trains on MNLI): one source, several concatenated under one head (ANLI+), or ``None``
    for evaluation-only tasks (retrieval). ``eval_source(split, lang)`` gives each language's
    evaluation data. ``languages`` is the benchmark's list (XTREME's where the task is in
    XTREME); ``languages_xtreme_r`` the XTREME-R list where it differs."""

    name: str
    format: str
    description: str
    label_names: tuple[str, ...]
    languages: tuple[str, ...]
    train: DataSource | tuple[DataSource, ...] | None
    dev: DataSource | None
    eval_source: Callable[[str, str], DataSource] = field(repr=False)
    eval_splits: tuple[str, ...] = ("validation", "test")
    metric: str = "accuracy"
    # How the per-language scores make the task's average: "languages" (XTREME's unweighted mean
    # over languages) or "queries" (one mean over every query of every language, XTREME-R's LAReQA).
    average: str = "languages"
    languages_xtreme_r: tuple[str, ...] | None = None
    benchmarks: tuple[str, ...] = ()  # "xtreme", "xtreme-r": which benchmark scores count this task
    # Machine-translated training data in another language, where the benchmark ships it (PAWS-X's
    # non-English train splits): translate_train(lang) -> its source. Only an intermediate stage
    # that asks for it (``languages:``) reads it; the zero-shot target phase never does.
    translate_train: Callable[[str], DataSource] | None = field(default=None, repr=False)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def train_sources(self) -> tuple[DataSource, ...]:
        if self.train is None:
            return ()
        return self.train if isinstance(self.train, tuple) else (self.train,)

    def benchmark_languages(self, benchmark: str = "xtreme") -> tuple[str, ...]:
        if benchmark == "xtreme-r" and self.languages_xtreme_r is not None:
            return self.languages_xtreme_r
        return self.languages


def mirror_only_hint(task: str, what: str, how: str, layout: str) -> str:
    """``DataSource.release_hint`` of a config only a local mirror can have (XTREME-R's
    additions to an XTREME task): what it is, how to make it, where the mirror keeps it."""
    return (
        f"{what} are not on the hub: {how}, write them at <dir>/{layout} in this task's schema and point "
        f"data.task_files.{task} (or data.local_dir) at <dir>"
    )
