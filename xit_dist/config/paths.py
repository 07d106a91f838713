"""Every path a spec names, made absolute once, on the driver, against the directory the command
was started in (before validation, so validation checks the same paths a run uses).

Ray runs trials, workers and jobs in working directories of its own (Tune gives each trial one),
so a relative path handed to Ray would name a different place in each process: a search spec's
``output_dir: xit_runs`` became ``<trial dir>/xit_runs`` in every trial. Resolved here:
``output_dir`` (its default included), ``model.name_or_path`` when it names a local directory,
``data.local_dir``, ``data.task_files.*``, each stage's ``training_from`` (a best.yaml path),
``language_files.*`` and ``mlm.files``, ``distributed.deepspeed_config`` (a path, or a bare name
found in ``./ds_configs/``) and a local ``tracking.uri`` (``sqlite:///relative.db``, ``file:``, a
path). Built-ins (``builtin:...``), hub ids, ``tune:<name>`` and URIs are left as written; a value
of the wrong type is left for validation to name. Resolving twice changes nothing.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Callable

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
BUILTIN_PREFIX = "builtin:"
TUNE_PREFIX = "tune:"


def is_uri(value: Any) -> bool:
    """``s3://...``, ``gs://...``, ``file://...``: anything with a scheme."""
    return isinstance(value, str) and bool(URI.match(value))


def absolute(value: Any, base: Path) -> Any:
    """A path string made absolute against ``base`` (``~`` expanded, ``..`` folded lexically:
    symlinks are kept as the user named them); anything else unchanged."""
    if not isinstance(value, str) or not value or is_uri(value) or value.startswith(BUILTIN_PREFIX):
        return value
    path = Path(value).expanduser()
    return os.path.normpath(path if path.is_absolute() else base / path)


def resolve_spec_paths(tree: dict, base: str | Path, default_output_dir: str) -> dict:
    """A copy of an experiment spec tree with every path absolute (see the module docstring)."""
    base = Path(base).expanduser().absolute()
    tree = copy.deepcopy(tree)
    tree.setdefault("output_dir", default_output_dir)
    _update(tree, "output_dir", lambda v: absolute(v, base))
    _update(_section(tree, "model"), "name_or_path", lambda v: _model(v, base))
    data = _section(tree, "data")
    _update(data, "local_dir", lambda v: absolute(v, base))
    _update(data, "task_files", lambda v: _each_value(v, base))
    stages = tree.get("intermediate")
    for stage in [*(stages if isinstance(stages, list) else []), tree.get("target")]:
        if isinstance(stage, dict):
            _update(stage, "training_from", lambda v: v if str(v).startswith(TUNE_PREFIX) else absolute(v, base))
            _update(stage, "language_files", lambda v: _each_value(v, base))
            _update(_section(stage, "mlm"), "files", lambda v: [absolute(f, base) for f in v] if isinstance(v, list) else v)
    _update(_section(tree, "distributed"), "deepspeed_config", lambda v: _ds_config(v, base))
    _update(_section(tree, "tracking"), "uri", lambda v: absolute_store(v, base))
    return tree


def _section(tree: dict, key: str) -> dict:
    value = tree.get(key)
    return value if isinstance(value, dict) else {}


def _update(node: dict, key: str, change: Callable[[Any], Any]) -> None:
    if node.get(key) is not None:
        node[key] = change(node[key])


def _each_value(mapping: Any, base: Path) -> Any:
    return {k: absolute(v, base) for k, v in mapping.items()} if isinstance(mapping, dict) else mapping


def _model(value: Any, base: Path) -> Any:
    """A path-looking value, or a hub-id-looking one that names a directory here (transformers
    would load that directory from here, and the hub elsewhere)."""
    if not isinstance(value, str) or value.startswith(BUILTIN_PREFIX):
        return value
    if value.startswith((".", "/", "~")) or (base / value).is_dir():
        return absolute(value, base)
    return value


def _ds_config(value: Any, base: Path) -> Any:
    """A path is resolved; a bare name (``zero2``) stays a name unless it is found in
    ``./ds_configs/`` and is not the repository's own file (elsewhere the name finds that one)."""
    from xit_dist.config.ds_config import REPO_DS_CONFIGS

    if not isinstance(value, str):
        return value
    if "/" in value or value.endswith(".json"):
        return absolute(value, base)
    here = base / "ds_configs" / f"{value}.json"
    if here.is_file() and here.resolve() != (REPO_DS_CONFIGS / f"{value}.json").resolve():
        return str(here)
    return value


def absolute_store(value: Any, base: Path) -> Any:
    """``sqlite:///relative.db`` (three slashes and a relative path), ``file:relative`` and a plain
    path are local stores; a server (``http://``), ``databricks`` and absolute stores are kept."""
    if not isinstance(value, str):
        return value
    for prefix in ("sqlite:///", "file:"):
        rest = value[len(prefix):]
        if value.startswith(prefix) and rest and not rest.startswith("/") and rest != ":memory:":
            return prefix + absolute(rest, base)
    looks_like_path = value.startswith((".", "~")) or ("/" in value and ":" not in value)
    return absolute(value, base) if looks_like_path else value
