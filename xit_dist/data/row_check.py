"""Find the first malformed row of a local file, so that a file `datasets` refuses is reported
as one line naming the file and the row (``train.jsonl: row 17: ...``), not as an Arrow trace."""

from __future__ import annotations

import csv
import json
from pathlib import Path

NO_LABEL = -1  # what a ClassLabel column holds for a row without a gold label (SNLI, hidden test sets)
_PYTHON_TYPES = {"string": (str,), "int32": (int,), "int64": (int,), "float32": (int, float), "float64": (int, float), "bool": (bool,)}


def class_id_problem(value: int, names, where: str) -> str | None:
    """A class id outside ``names`` (-1, no label, is allowed)."""
    if NO_LABEL <= value < len(names):
        return None
    return f"{where}: class id {value} is out of range for {len(names)} classes {list(names)} (or {NO_LABEL}: no label)"


def _type_problem(value, kind, where: str) -> str | None:
    if value is None:
        return None  # nulls are allowed by Arrow; the format decides whether the row is usable
    if isinstance(kind, tuple) and kind[0] == "classlabel":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            return f"{where}: expected a class id or name, got {type(value).__name__}"
        if isinstance(value, str) and value not in kind[1]:
            return f"{where}: {value!r} is not one of {list(kind[1])}"
        return class_id_problem(value, kind[1], where) if isinstance(value, int) else None
    if isinstance(kind, list):
        if not isinstance(value, list):
            return f"{where}: expected a list, got {type(value).__name__}"
        for i, item in enumerate(value):
            problem = _type_problem(item, kind[0], f"{where}[{i}]")
            if problem:
                return problem
        return None
    if isinstance(kind, dict):
        if not isinstance(value, dict):
            return f"{where}: expected an object with {list(kind)}, got {type(value).__name__}"
        for name, inner in kind.items():
            if name not in value:
                return f"{where}: missing field {name!r}"
            problem = _type_problem(value[name], inner, f"{where}.{name}")
            if problem:
                return problem
        return None
    allowed = _PYTHON_TYPES.get(kind)
    if allowed and (not isinstance(value, allowed) or (bool not in allowed and isinstance(value, bool))):
        return f"{where}: expected {kind}, got {type(value).__name__} {value!r:.40}"
    return None


def first_bad_row(path: Path, schema: dict[str, object]) -> str | None:
    """``"<path>: row N: <problem>"`` for the first row that is not valid JSON / CSV or does not
    fit ``schema`` (rows counted from 1; the CSV header is row 0), or None if every row fits."""
    if path.suffix in (".jsonl", ".json"):
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        if path.suffix == ".json" and text.lstrip().startswith("["):
            try:
                records = json.loads(text)
            except json.JSONDecodeError as err:
                return f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
            rows = enumerate(records, 1)
        else:
            rows = _json_lines(path, text)
            if isinstance(rows, str):
                return rows
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:  # only read once `datasets` refused the file
            rows = enumerate(pq.read_table(path).to_pylist(), 1)
        except Exception:  # not Parquet at all: the caller reports the reader's own error
            return None
    elif path.suffix in (".csv", ".tsv"):
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(enumerate(csv.DictReader(handle, delimiter="\t" if path.suffix == ".tsv" else ","), 1))
        schema = {name: kind for name, kind in schema.items() if kind == "string"}  # CSV cells are all text
    else:
        return None
    for number, row in rows:
        if not isinstance(row, dict):
            return f"{path}: row {number}: expected an object, got {type(row).__name__}"
        for name, kind in schema.items():
            if name not in row:
                return f"{path}: row {number}: missing column {name!r}"
            problem = _type_problem(row[name], kind, name)
            if problem:
                return f"{path}: row {number}: {problem}"
    return None


def _json_lines(path: Path, text: str):
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            return f"{path}: row {number}: invalid JSON: {err.msg} (column {err.colno})"
    return rows
