"""Load one split of a task's data with `datasets`, from the hub or from local files in the
hub's exact schema. Both paths end in the same checks and casts, so the rows a model sees do
not depend on where they came from."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING

from xit_dist.data.class_labels import align_class_labels, refuse_class_ids_out_of_range
from xit_dist.data.hub_schema import derived_fingerprint, hub_features
from xit_dist.data.row_check import first_bad_row
from xit_dist.errors import DataError

if TYPE_CHECKING:  # a type only, for the annotations
    from xit_dist.tasks.base import DataSource

LOCAL_READERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv", ".tsv": "csv"}


def local_file(root: Path, source: DataSource) -> Path:
    """``<root>/<hub_id>/<config>/<split>.<ext>`` (the local mirror's layout; a data set without
    configs is ``default``, as the hub names it), or ``root`` itself when it is one file (one
    split given on its own, ``xit-dist data --data-files FILE``)."""
    if root.is_file():
        if root.suffix not in LOCAL_READERS:
            raise DataError(f"{root}: cannot read a {root.suffix or 'extensionless'} file; use one of {', '.join(LOCAL_READERS)}")
        return root
    folder = root / source.hub_id / (source.config or "default")
    for ext in LOCAL_READERS:
        candidate = folder / f"{source.split}{ext}"
        if candidate.is_file():
            return candidate
    tried = ",".join(ext.lstrip(".") for ext in LOCAL_READERS)
    raise DataError(
        f"{folder / source.split}.{{{tried}}}: not found (local copy of {source.describe()}; "
        "a mirror is laid out as <hub_id>/<config>/<split>.<ext>)"
    )


def load_source(source: DataSource, local_dir: Path | None, revision: str | None = None):
    """Rows of ``source`` with exactly the hub's columns and types (extra columns dropped)."""
    import datasets

    if local_dir is None and (source.reader is not None or source.release_hint):
        raise DataError(
            f"{source.describe()}: no usable hub copy; "
            + (source.release_hint or "point data.task_files (or --data-files) at the original release files")
        )
    if source.reader is not None:
        origin = f"{local_dir} ({source.describe()})"
        rows = source.reader(local_dir, source)
    elif local_dir is not None:
        path = local_file(local_dir, source)
        origin = str(path)
        reader = LOCAL_READERS[path.suffix]
        options = {"delimiter": "\t"} if path.suffix == ".tsv" else {}
        try:
            with _datasets_errors_silenced():  # the reason is reported below, as one line
                rows = datasets.load_dataset(reader, data_files={"rows": str(path)}, split="rows", **options)
        except Exception as err:  # datasets raises many types for malformed files
            raise DataError(first_bad_row(path, source.schema) or f"{path}: cannot read as {reader}: {_first_line(err)}") from None
    else:
        origin = source.describe()
        try:
            rows = datasets.load_dataset(source.hub_id, source.config, split=source.split, revision=revision or source.default_revision)
        except Exception as err:
            raise DataError(f"{origin}: cannot load from the hub: {_first_line(err)}") from None
    rows = conform(rows, source, origin)
    if source.reader is None and local_dir is not None:
        _refuse_missing_cells(rows, origin)
    if source.language_column is not None:
        predicate = _equals(source.language) if source.match == "equals" else _starts_with(source.language)
        rows = rows.filter(
            predicate,
            input_columns=[source.language_column],
            new_fingerprint=derived_fingerprint(rows, "language", source.language_column, source.match, source.language),
        )
        if len(rows) == 0:
            raise DataError(f"{origin}: no rows with {source.language_column} {source.match} {source.language!r}")
    return rows


def load_rows(source: DataSource, data_dir: str | Path | None, revision: str | None = None, limit: int | None = None):
    """``load_source`` from a directory given as a string or None, its first ``limit`` rows."""
    rows = load_source(source, Path(data_dir) if data_dir else None, revision)
    if limit is not None and limit < len(rows):
        rows = rows.select(range(limit))
    return rows


@contextlib.contextmanager
def _datasets_errors_silenced():
    import datasets

    previous = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL + 10)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(previous)


class _equals:
    """A picklable predicate (a lambda would make `datasets` hash bytecode on every call)."""

    def __init__(self, value):
        self.value = value

    def __call__(self, cell) -> bool:
        return cell == self.value


class _starts_with(_equals):
    def __call__(self, cell) -> bool:
        return cell.startswith(self.value)


def conform(rows, source: DataSource, origin: str):
    """Keep the hub's columns, cast to the hub's types; one clear line when a column is missing
    or a value does not fit (naming the row when the origin is a local file)."""
    missing = [name for name in source.schema if name not in rows.column_names]
    if missing:
        raise DataError(f"{origin}: missing column(s) {missing}; expected the hub schema {list(source.schema)}")
    rows = rows.select_columns(list(source.schema))
    rows = align_class_labels(rows, source.schema, origin)
    try:
        rows = rows.cast(hub_features(source.schema))
        refuse_class_ids_out_of_range(rows, source.schema, origin)  # casting int64 ids checks no range
    except Exception as err:
        located = first_bad_row(Path(origin), source.schema) if Path(origin).is_file() else None
        if located is None and isinstance(err, DataError):
            raise
        raise DataError(located or f"{origin}: columns do not match the hub types {source.schema}: {_first_line(err)}") from None
    return rows


def _refuse_missing_cells(rows, origin: str) -> None:
    """A key missing from some rows of a local file reads as null: name the first such row
    (hub data sets have no nulls in these columns)."""
    table = rows.data.table
    for name in table.column_names:
        column = table.column(name)
        if column.null_count:
            row = next(i for i, valid in enumerate(column.is_valid().to_pylist()) if not valid)
            raise DataError(f"{origin}: row {row + 1}: missing column {name!r}")


def _first_line(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"
