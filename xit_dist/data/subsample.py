"""Study 2 (intermediate data size): keep exactly N training rows of a stage's task, seeded, and
stratified by the gold label where the task has one (classification, multiple choice), so a
1K subsample of MNLI keeps MNLI's label balance.

What N counts: rows as the hub stores them (questions for QA, not context windows), after the
rows the format would drop anyway (``row_problems``: SNLI's no-gold label, an answer not found
at its offset) are set aside, so the phase really trains on N examples. A task read from
several sources (ANLI+ = ANLI R1-R3 + SNLI + MNLI) gets N split across its sources in
proportion to their sizes, then stratified within each source.

How: the per-class (and per-source) counts come from `datasets`' own stratification helper
(``approximate_mode``, the one ``Dataset.train_test_split(stratify_by_column=...)`` uses; it
needs no ClassLabel column, so XNLI's and PAWS-X's string labels work too); the rows within a
class are a seeded permutation (numpy's PCG64). Asking for more rows than the task has is an
error rather than a silent "full": the phase would be a different hash with the same data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from xit_dist.errors import DataError

SUBSAMPLE_VERSION = "1"


class SubsampleOptions(BaseModel):
    """A stage's ``subsample:`` block."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(..., gt=0, description="training rows kept (exact)")
    seed: int = Field(0, description="which rows: the same seed and size always keep the same rows")
    stratify: bool = Field(True, description="keep the label distribution (tasks with a label column)")


def label_column(source) -> str | None:
    """The top-level column holding a row's gold label, when the task's column roles name one
    (``PairColumns.label``, ``ChoiceColumns.label``); None for QA, tagging, retrieval."""
    name = getattr(source.columns, "label", None)
    if isinstance(name, str) and name in source.schema:
        return name
    return None


def usable_indices(fmt, task, rows, source) -> np.ndarray:
    """Indices of the rows the format keeps for training."""
    dropped = {index for index, _ in fmt.row_problems(task, rows, source)}
    return np.array([i for i in range(len(rows)) if i not in dropped], dtype=np.int64)


def stratified_choice(population: int, labels: list[Any] | None, size: int, rng: np.random.Generator) -> np.ndarray:
    """Positions (in ``range(population)``) of ``size`` items, sorted so rows keep their file
    order. With ``labels`` (one per item): each class gets its share of ``size`` (largest
    remainder, ties broken by ``rng``) and a random subset of its items; without: a random subset."""
    from datasets.utils.stratify import approximate_mode

    if labels is None:
        return np.sort(rng.permutation(population)[:size])
    keys = np.array([repr(label) for label in labels])  # any label value is its own stratum
    classes, inverse = np.unique(keys, return_inverse=True)
    per_class = approximate_mode(np.bincount(inverse, minlength=len(classes)), size, rng)
    chosen = []
    for class_id, take in enumerate(per_class):
        members = np.flatnonzero(inverse == class_id)
        chosen.append(members[rng.permutation(len(members))[:take]])
    return np.sort(np.concatenate(chosen))


def subsample_sources(task, sources, row_sets: list, options: SubsampleOptions) -> list:
    """The rows of each training source after keeping ``options.size`` usable rows in all.
    Rows the format would drop are removed here too (they are not part of N)."""
    from datasets.utils.stratify import approximate_mode

    from xit_dist.data.hub_schema import derived_fingerprint
    from xit_dist.tasks.formats import get_format

    fmt = get_format(task.format)
    usable = [usable_indices(fmt, task, rows, source) for rows, source in zip(row_sets, sources)]
    available = sum(len(indices) for indices in usable)
    if options.size > available:
        raise DataError(
            f"{task.name}: subsample.size {options.size} exceeds the task's {available} usable training rows"
        )
    rng = np.random.default_rng(options.seed)
    shares = approximate_mode(np.array([len(indices) for indices in usable]), options.size, rng) if len(usable) > 1 else [options.size]
    kept = []
    for rows, source, indices, share in zip(row_sets, sources, usable, shares):
        column = label_column(source) if options.stratify else None
        labels = _take(list(rows[column]), indices) if column else None
        positions = stratified_choice(len(indices), labels, int(share), rng)
        kept.append(
            rows.select(
                indices[positions],
                new_fingerprint=derived_fingerprint(rows, "subsample", SUBSAMPLE_VERSION, options.model_dump_json(), [len(u) for u in usable]),
            )
        )
    return kept


def _take(column: list, indices: np.ndarray) -> list:
    return [column[i] for i in indices]
