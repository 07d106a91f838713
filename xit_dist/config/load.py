"""Loading an experiment spec: read its YAML, apply ``--set`` overrides, make its paths
absolute, validate; every mistake is one line (``SpecError``) naming the file and field.

Grids (``plan.grid``) and search specs (``tune.search_spec``) load through the same functions."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from xit_dist.config.spec import ExperimentSpec
from xit_dist.config.yaml_files import read_yaml_mapping
from xit_dist.errors import SpecError

Model = TypeVar("Model", bound=BaseModel)
HERE = Path(".")  # paths resolve against the directory the command was started in


def load_spec(path: str | Path, overrides: list[str] | None = None, relative_to: Path | None = HERE) -> ExperimentSpec:
    """Read a YAML spec, apply overrides, make its paths absolute against ``relative_to``
    (``None``: keep them as written, for a job that resolves them where it runs), validate.
    Raises SpecError with one line."""
    tree = apply_overrides(read_yaml_mapping(path), overrides)
    return validate_tree(tree, source=str(path), relative_to=relative_to)


def resolve_paths(tree: dict, relative_to: Path | None = HERE) -> dict:
    """The tree with every path of the spec absolute (``xit_dist.config.paths``); as it is for ``None``."""
    from xit_dist.config.paths import resolve_spec_paths

    if relative_to is None:
        return tree
    return resolve_spec_paths(tree, relative_to, ExperimentSpec.model_fields["output_dir"].default)


def apply_overrides(tree: dict, overrides: list[str] | None) -> dict:
    """The tree with each ``--set`` assignment applied in order (changed in place)."""
    for assignment in overrides or []:
        apply_override(tree, assignment)
    return tree


def apply_override(tree: dict, assignment: str) -> None:
    """Apply one ``key.sub.0.field=value`` override; the value is parsed as YAML (typed)."""
    if "=" not in assignment:
        raise SpecError(f"--set {assignment!r}: expected KEY=VALUE")
    dotted, raw = assignment.split("=", 1)
    if not all(dotted.strip().split(".")):
        raise SpecError(f"--set {assignment!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    set_field(tree, dotted, value)


def set_field(tree: dict, dotted: str, value: Any, origin: str = "--set") -> None:
    """Set ``key.sub.0.field`` in a spec tree (list items by index); errors name ``origin``
    (``--set``, a grid axis) and the path."""
    keys = dotted.strip().split(".")
    if not all(keys):
        raise SpecError(f"{origin} {dotted!r}: empty key")
    node: Any = tree
    for depth, key in enumerate(keys[:-1]):
        node = _descend(node, key, ".".join(keys[: depth + 1]), origin)
    last = keys[-1]
    if isinstance(node, list):
        index = _list_index(node, last, dotted.strip(), origin)
        node[index] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise SpecError(f"{origin} {'.'.join(keys[:-1])}: not a mapping (cannot set {last!r} inside {node!r})")


def _descend(node: Any, key: str, where: str, origin: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, key, where, origin)]
    if not isinstance(node, dict):
        raise SpecError(f"{origin} {where}: not a mapping")
    return node.setdefault(key, {})


def _list_index(node: list, key: str, where: str, origin: str) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise SpecError(f"{origin} {where}: list index {key!r} out of range (length {len(node)})")
    return int(key)


def validate_tree(tree: dict, source: str = "spec", relative_to: Path | None = None) -> ExperimentSpec:
    """The validated spec. With ``relative_to``, the tree is validated as written first (an error
    names a path as the user wrote it), then with its paths absolute (``resolve_paths``): the
    spec returned is the one a run hands to Ray."""
    spec = validate_model(ExperimentSpec, tree, source)
    if relative_to is not None:
        spec = validate_model(ExperimentSpec, resolve_paths(tree, relative_to), source)
    return spec


def validate_model(model: type[Model], tree: dict, source: str) -> Model:
    """``model`` validated from ``tree`` (an experiment spec, a search spec); any problem is one
    SpecError line starting with ``source``."""
    try:
        return model.model_validate(tree)
    except ValidationError as err:
        raise SpecError(f"{source}: {format_validation_error(err)}") from None


def format_validation_error(err: ValidationError) -> str:
    """One line: ``field.path: message (got value)``; several problems joined with '; '."""
    parts = []
    for problem in err.errors():
        where = ".".join(str(p) for p in problem["loc"]) or "spec"
        message = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "extra_forbidden":
            message = "unknown key"
        elif "input" in problem and not isinstance(problem["input"], (dict, list)) and problem["type"] != "missing":
            message += f" (got {problem['input']!r})"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def dump_spec(spec: ExperimentSpec) -> str:
    """The resolved spec as YAML, as saved beside the results and in MLflow."""
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False, allow_unicode=True)




__all__ = [
    "HERE",
    "apply_override",
    "apply_overrides",
    "dump_spec",
    "format_validation_error",
    "load_spec",
    "read_yaml_mapping",
    "resolve_paths",
    "set_field",
    "validate_model",
    "validate_tree",
]
