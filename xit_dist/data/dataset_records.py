"""What a phase read, as MLflow records it (``MlflowClient.log_inputs``): one entry per task
source and split, named by hub id / config / split (and language), or by the local file, with a
digest of the rows actually read (after language filtering, ``max_train_examples``, subsampling
and augmentation) and the data revision. Two runs on different data then differ in the runs
table's Dataset column, even when their names agree.

Rank 0 of a phase computes the records where it reads the rows; they travel in the phase record
(``phase.json``, ``"datasets"``) or the evaluation record to the driver, which logs them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # a type only, for the annotations
    from xit_dist.tasks.base import DataSource

DIGEST_CHARS = 16          # MLflow's datasets table holds digests of up to 36 characters
DIGEST_BATCH_ROWS = 4096
TRAINING, EVALUATION = "training", "evaluation"   # MLflow's mlflow.data.context values


def content_digest(rows) -> str:
    """sha256 over the rows' content, column names included, in row order: the same rows give
    the same digest whether they came from the hub or a local mirror; any changed, added,
    dropped or reordered row changes it."""
    digest = hashlib.sha256()
    for batch in rows.with_format("arrow").iter(batch_size=DIGEST_BATCH_ROWS):
        for row in batch.to_pylist():
            digest.update(json.dumps(row, sort_keys=True, default=str, ensure_ascii=False).encode())
            digest.update(b"\n")
    return digest.hexdigest()[:DIGEST_CHARS]


def dataset_name(source: DataSource) -> str:
    """``<hub_id>/<config>/<split>`` (``default`` for a data set without configs, as the hub
    names it), ``[<language>]`` appended when rows are filtered to one language."""
    name = f"{source.hub_id}/{source.config or 'default'}/{source.split}"
    return f"{name}[{source.language}]" if source.language_column and source.language else name


def dataset_record(task: str, source: DataSource, rows, data_dir: str | Path | None, revision: str | None, context: str) -> dict[str, Any]:
    """The record of one source as read: name, where from, digest, rows, revision, context."""
    from xit_dist.data.loading import local_file

    where = "hub"
    if data_dir is not None:
        root = Path(data_dir)
        where = str(root if source.reader is not None else local_file(root, source))
    return {
        "task": task,
        "name": dataset_name(source),
        "hub_id": source.hub_id,
        "config": source.config,
        "split": source.split,
        "source": where,
        "digest": content_digest(rows),
        "rows": len(rows),
        "revision": revision or source.default_revision or "main",
        "context": context,
    }
