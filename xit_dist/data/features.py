"""Rows -> model inputs for one task split, through the task's format (cached by `datasets`)."""

from __future__ import annotations

from pathlib import Path

from xit_dist.data.loading import load_source
from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.formats import get_format


def task_features(
    task: Task,
    source: DataSource,
    tokenizer,
    max_length: int,
    data_dir: str | Path | None,
    revision: str | None = None,
    limit: int | None = None,
):
    rows = load_source(source, Path(data_dir) if data_dir else None, revision)
    if limit is not None and limit < len(rows):
        rows = rows.select(range(limit))
    return get_format(task.format).featurize(rows, source, tokenizer, max_length)
