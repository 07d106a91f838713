"""Rows a task's format drops before training (a label of -1, an empty text, an answer that is
not in its context), counted per training split: `xit-dist data` lists them, preflight prints
one line per split that loses rows before Ray starts, and the phase record (phase.json, key
``dropped_rows``) keeps the counts. Rows are numbered from 1 everywhere, as the messages about
malformed files number them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

SHOWN_ROWS = 5  # row numbers kept per split (the count is always complete)


@dataclass(frozen=True)
class SplitDrops:
    source: str                # DataSource.describe()
    rows: int                  # rows read (after max_train_examples)
    reasons: dict[str, int]    # reason -> rows dropped for it
    examples: tuple[tuple[int, str], ...]  # (row counted from 1, full reason) of the first drops

    @property
    def dropped(self) -> int:
        return sum(self.reasons.values())

    def line(self, task: str) -> str:
        why = "; ".join(f"{reason} ({count})" for reason, count in self.reasons.items())
        rows = ", ".join(str(row) for row, _ in self.examples) + (", ..." if self.dropped > len(self.examples) else "")
        return f"{task}: {self.source}: dropped {self.dropped} of {self.rows} rows: {why}; rows {rows}"

    def record(self) -> dict:
        return {"rows": self.rows, "dropped": self.dropped, "reasons": self.reasons, "first_rows": [row for row, _ in self.examples]}


def reason_kind(reason: str) -> str:
    """A drop reason without its row-specific detail (``"label -1 is not one of [...]"`` stays)."""
    return reason.split(":")[0] if ":" in reason else reason


def split_drops(task, source, rows, problems=None) -> SplitDrops:
    """``problems``: the format's ``row_problems`` (0-based index, reason), if already computed."""
    from xit_dist.tasks.formats import get_format

    if problems is None:
        problems = list(get_format(task.format).row_problems(task, rows, source))
    reasons = Counter(reason_kind(reason) for _, reason in problems)
    examples = tuple((index + 1, reason) for index, reason in problems[:SHOWN_ROWS])
    return SplitDrops(source.describe(), len(rows), dict(reasons.most_common()), examples)


def training_drops(task, data_dir, revision=None, limit=None, stage=None) -> list[SplitDrops]:
    """Per training split of ``task`` in a stage (its languages included), the rows it drops."""
    from xit_dist.data.loading import load_rows
    from xit_dist.data.stage import training_sources

    task_dir = str(data_dir) if data_dir is not None else None
    return [
        split_drops(task, source, load_rows(source, directory, revision, limit))
        for source, directory in training_sources(task, task_dir, stage)
    ]


def stage_drop_lines(stage, inputs, revision=None) -> list[str]:
    """Preflight: one line per training split of a spec stage that loses rows."""
    from xit_dist.data.stage import stage_data, task_names
    from xit_dist.tasks.registry import get_task

    data = stage_data(stage, inputs)
    limit = stage.training.max_train_examples
    return [
        drops.line(name)
        for name in task_names(stage)
        for drops in training_drops(get_task(name), inputs.data_dir_for(name), revision, limit, data)
        if drops.dropped
    ]


def phase_drop_record(job) -> dict[str, dict]:
    """For the phase record: every training split of the phase's task(s) -> its drop counts."""
    from xit_dist.tasks.registry import get_task

    stage = job.stage
    if stage is not None and stage.is_mixture:
        tasks = [(name, stage.data_dirs.get(name)) for name in stage.tasks]
    else:
        tasks = [(job.task, job.data_dir)]
    limit = job.training.max_train_examples
    return {
        drops.source: drops.record()
        for name, directory in tasks
        for drops in training_drops(get_task(name), directory, job.data_revision, limit, stage)
    }
