"""Load one split of a task's data with `datasets`, from the hub or from local files in the
hub's exact schema. Both paths end in the same checks and casts, so the rows a model sees do
not depend on where they came from."""

from __future__ import annotations

import hashlib
from pathlib import Path

from xit_dist.errors import DataError
from xit_dist.tasks.base import DataSource

LOCAL_READERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".tsv": "csv"}


def hub_features(schema: dict[str, object]):
    """The hub's column types as `datasets.Features`."""
    from datasets import ClassLabel, Features, Value

    def feature(kind):
        if isinstance(kind, tuple) and kind[0] == "classlabel":
            return ClassLabel(names=list(kind[1]))
        return Value(kind)

    return Features({name: feature(kind) for name, kind in schema.items()})


def local_file(root: Path, source: DataSource) -> Path:
    """``<root>/<hub_id>/<config>/<split>.<ext>``: the local mirror's layout."""
    folder = root / source.hub_id / (source.config or "default")
    for ext in LOCAL_READERS:
        candidate = folder / f"{source.split}{ext}"
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder / source.split}.jsonl: not found (local copy of {source.describe()})")


def load_source(source: DataSource, local_dir: Path | None, revision: str | None = None):
    """Rows of ``source`` with exactly the hub's columns and types (extra columns dropped)."""
    import datasets

    if local_dir is not None:
        path = local_file(local_dir, source)
        origin = str(path)
        reader = LOCAL_READERS[path.suffix]
        options = {"delimiter": "\t"} if path.suffix == ".tsv" else {}
        try:
            rows = datasets.load_dataset(reader, data_files={"rows": str(path)}, split="rows", **options)
        except Exception as err:  # datasets raises many types for malformed files
            raise DataError(f"{path}: cannot read as {reader}: {_first_line(err)}") from None
    else:
        origin = source.describe()
        try:
            rows = datasets.load_dataset(source.hub_id, source.config, split=source.split, revision=revision)
        except Exception as err:
            raise DataError(f"{origin}: cannot load from the hub: {_first_line(err)}") from None
    rows = conform(rows, source, origin)
    if source.language_column is not None:
        rows = rows.filter(
            _equals(source.language),
            input_columns=[source.language_column],
            new_fingerprint=derived_fingerprint(rows, "language", source.language_column, source.language),
        )
        if len(rows) == 0:
            raise DataError(f"{origin}: no rows with {source.language_column}={source.language!r}")
    return rows


class _equals:
    """A picklable predicate (a lambda would make `datasets` hash bytecode on every call)."""

    def __init__(self, value):
        self.value = value

    def __call__(self, cell) -> bool:
        return cell == self.value


def derived_fingerprint(rows, *parts: object) -> str:
    """`datasets` cache key of a transform: the input's fingerprint plus what the transform does."""
    return hashlib.sha256("|".join([rows._fingerprint, *map(str, parts)]).encode()).hexdigest()[:32]


def conform(rows, source: DataSource, origin: str):
    """Keep the hub's columns, cast to the hub's types; one clear line when a column is missing."""
    missing = [name for name in source.schema if name not in rows.column_names]
    if missing:
        raise DataError(f"{origin}: missing column(s) {missing}; expected the hub schema {list(source.schema)}")
    rows = rows.select_columns(list(source.schema))
    try:
        return rows.cast(hub_features(source.schema))
    except Exception as err:
        raise DataError(f"{origin}: columns do not match the hub types {source.schema}: {_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"
