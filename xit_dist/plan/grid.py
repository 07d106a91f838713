"""Grids: one base experiment spec and named axes, expanded as a product into one
``ExperimentSpec`` per cell (the paper's table is intermediate setting x target task x seed).

A grid file is a YAML mapping with ``axes`` (that key is how the CLI tells a grid from a spec)::

    grid: paper-table            # name of the grid; default: the file's stem
    study: data_size             # optional: which study-specific report sections apply
    base: ../demo.yaml           # the spec every cell starts from: a path (relative to this
                                 # file) or an inline mapping; it may leave out the target
    training: {warmup_ratio: 0.1}  # defaults under every phase's own training settings
    axes:
      intermediate: [none, mnli, [mnli, qqp]]   # settings: stage lists; none = no intermediate
      target: {xnli: {task: xnli, training: {epochs: 2}, evaluation: {languages: [en, de]}}, pawsx: pawsx}
      seed: [0, 1, 2]
      intermediate.0.training.learning_rate: [1.0e-5, 3.0e-5]   # any dotted spec field
      lr: {field: target.training.learning_rate, values: {low: 1.0e-5, high: 3.0e-5}}

Each axis is a list (labels derived from the values) or a mapping ``label: value``. A stage
named by its task alone trains with the grid's ``training``; a target named alone keeps the
base target's training, and a target mapping may carry ``evaluation:`` settings for that target.
A target without a training phase (retrieval) takes only the settings its own value gives. Axes apply in this order: intermediate, target, seed, then dotted
fields in file order. Every cell is validated before anything starts; an error names the
file, the cell and the field in one line.

Cells that agree on everything that decides a phase share it (see ``plan.phase_hash``):
``shared_phases`` lists each distinct phase once with every cell that needs it.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from xit_dist.errors import SpecError
from xit_dist.plan.phases import Phase, build_plan
from xit_dist.config.load import HERE, apply_override, format_validation_error, read_yaml_mapping, set_field, validate_tree
from xit_dist.config.spec import ExperimentSpec
from xit_dist.tracking.tags import AXIS_TAG_PREFIX, CELL_TAG, CELLS_TAG, GRID_TAG, INDEX_TAG, SEED_TAG, STUDY_TAG

STRUCTURAL_AXES = ("intermediate", "target", "seed")
NO_INTERMEDIATE = "none"
# Cells must agree on these: phases are shared through output_dir, runs through one MLflow experiment.
SHARED_FIELDS = ("output_dir", "tracking", "distributed.address")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


class GridFile(BaseModel):
    """The grid file's top level. Unknown keys are errors, as in a spec."""

    model_config = ConfigDict(extra="forbid")

    grid: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$")
    study: str | None = None
    base: str | dict[str, Any]
    training: dict[str, Any] = Field(default_factory=dict)
    axes: dict[str, Any] = Field(..., min_length=1)


@dataclass(frozen=True)
class AxisValue:
    label: str
    value: Any


@dataclass(frozen=True)
class Axis:
    name: str
    field: str | None  # the dotted spec field; None for intermediate / target / seed
    values: tuple[AxisValue, ...]


@dataclass
class Cell:
    """One run of the grid: its spec, its display name and the label it has on every axis."""

    name: str                  # <grid>/<intermediate>-><target>/seed<k>[/<axis>=<label>...]
    spec: ExperimentSpec
    labels: dict[str, str]     # axis name -> label
    grid: str
    study: str | None
    total_cells: int
    index: int

    @cached_property
    def phases(self) -> list[Phase]:
        return build_plan(self.spec)

    @property
    def tags(self) -> dict[str, str]:
        """MLflow tags of the cell's parent run: what reports group and filter by."""
        tags = {GRID_TAG: self.grid, CELL_TAG: self.name, SEED_TAG: str(self.spec.seed), CELLS_TAG: str(self.total_cells),
                INDEX_TAG: str(self.index)}
        tags.update({f"{AXIS_TAG_PREFIX}{axis}": label for axis, label in self.labels.items()})
        if self.study:
            tags[STUDY_TAG] = self.study
        return tags


@dataclass
class Grid:
    name: str
    study: str | None
    source: str
    axes: list[Axis]
    cells: list[Cell]

    def shape(self) -> str:
        return " x ".join(f"{axis.name} {len(axis.values)}" for axis in self.axes)


@dataclass
class SharedPhase:
    """A distinct phase (one hash) and every cell whose plan contains it, in grid order."""

    phase: Phase
    cells: list[Cell] = field(default_factory=list)

    @property
    def hash(self) -> str:
        return self.phase.hash

    def phase_of(self, cell: Cell) -> Phase:
        return next(p for p in cell.phases if p.hash == self.hash)


def shared_phases(cells: list[Cell]) -> list[SharedPhase]:
    """Each distinct phase once, upstream before downstream (a cell's plan is in order)."""
    found: dict[str, SharedPhase] = {}
    for cell in cells:
        for phase in cell.phases:
            found.setdefault(phase.hash, SharedPhase(phase)).cells.append(cell)
    return list(found.values())


# ---------------------------------------------------------------------------------- loading


def is_grid_file(path: str | Path) -> bool:
    """A YAML mapping with ``axes`` at the top level is a grid; anything else is read as a spec."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        return "axes" in read_yaml_mapping(path)
    except SpecError:
        return False  # load_spec reports the problem


def load_grid(path: str | Path, overrides: list[str] | None = None, relative_to: Path | None = HERE) -> Grid:
    """Read, expand and validate a grid; ``overrides`` (``--set``) apply to the base spec; each
    cell's paths are made absolute against ``relative_to`` (as ``load_spec`` does)."""
    path = Path(path)
    tree = read_yaml_mapping(path)
    try:
        grid_file = GridFile.model_validate(tree)
    except ValidationError as err:
        raise SpecError(f"{path}: {format_validation_error(err)}") from None
    name = grid_file.grid or _NAME_CHARS.sub("_", path.stem)
    base = _base_tree(grid_file.base, path)
    for assignment in overrides or []:
        apply_override(base, assignment)
    axes = [_parse_axis(axis_name, raw, f"{path}: axes.{axis_name}") for axis_name, raw in grid_file.axes.items()]
    return expand(name, grid_file.study, base, grid_file.training, axes, str(path), relative_to)


def _base_tree(base: str | dict, grid_path: Path) -> dict:
    if isinstance(base, dict):
        return copy.deepcopy(base)
    base_path = Path(base).expanduser()
    if not base_path.is_absolute():
        base_path = grid_path.parent / base_path
    if not base_path.is_file():
        raise SpecError(f"{grid_path}: base: spec file not found: {base_path}")
    return read_yaml_mapping(base_path)


def _parse_axis(name: str, raw: Any, where: str) -> Axis:
    if name in STRUCTURAL_AXES:
        target_field = None
        values = raw
    elif "." in name:
        target_field, values = name, raw
    else:
        if not isinstance(raw, dict) or set(raw) != {"field", "values"}:
            raise SpecError(
                f"{where}: an axis that is not intermediate, target or seed is a dotted spec field "
                "(e.g. target.training.learning_rate: [...]) or {field: <dotted field>, values: [...]}"
            )
        target_field, values = str(raw["field"]), raw["values"]
    if isinstance(values, dict):
        pairs = [(str(label), value) for label, value in values.items()]
    elif isinstance(values, list):
        pairs = [(_auto_label(name, value, where), value) for value in values]
    else:
        raise SpecError(f"{where}: expected a list of values or a mapping label: value")
    if not pairs:
        raise SpecError(f"{where}: no values")
    labels = [label for label, _ in pairs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise SpecError(f"{where}: two values share the label {duplicates[0]!r}; give the axis as a mapping label: value")
    if name == "seed":
        for label, value in pairs:
            if not isinstance(value, int) or isinstance(value, bool):
                raise SpecError(f"{where}.{label}: a seed is an integer (got {value!r})")
    return Axis(name, target_field, tuple(AxisValue(label, value) for label, value in pairs))


def _auto_label(axis: str, value: Any, where: str) -> str:
    if axis == "intermediate":
        return stages_label(_stage_list(value, where))
    if axis == "target":
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and isinstance(value.get("task"), str):
            return value["task"]
        raise SpecError(f"{where}: a target is a task name or a mapping with task: (got {value!r})")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return str(value)
    raise SpecError(f"{where}: give values that are not plain scalars as a mapping label: value")


def stages_label(stages: list) -> str:
    """``none`` for no intermediate phase, else the stage tasks in order joined by ``+`` (the
    tasks of a multi-task stage joined by ``&``)."""

    def one(stage) -> str:
        if isinstance(stage, str):
            return stage
        if isinstance(stage.get("tasks"), list) and "task" not in stage:
            return "&".join(t if isinstance(t, str) else str(t.get("task", "?")) for t in stage["tasks"])
        return str(stage.get("task", "?"))

    return "+".join(one(stage) for stage in stages) or NO_INTERMEDIATE


def _stage_list(value: Any, where: str) -> list:
    """An intermediate setting: ``none`` / null / [] (no stage), a task name, one stage mapping,
    or a list of task names and stage mappings (sequential stages)."""
    if value is None or value == NO_INTERMEDIATE or value == []:
        return []
    if isinstance(value, (str, dict)):
        return [value]
    if isinstance(value, list) and all(isinstance(stage, (str, dict)) for stage in value):
        return list(value)
    raise SpecError(f"{where}: an intermediate setting is none, a task name, a stage mapping or a list of them (got {value!r})")


def _trains(task: Any) -> bool:
    """Whether the target has a training phase; unknown names count as training (validation names them)."""
    from xit_dist.config.spec import target_trains

    try:
        return target_trains(task)
    except (SpecError, KeyError, TypeError):
        return True


def deep_merge(under: dict, over: dict) -> dict:
    """``over`` wins; nested mappings merge key by key."""
    merged = copy.deepcopy(under)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _with_defaults(stage: str | dict, training: dict) -> dict:
    stage = {"task": stage} if isinstance(stage, str) else copy.deepcopy(stage)
    stage["training"] = deep_merge(training, stage.get("training") or {})
    return stage


# ---------------------------------------------------------------------------------- expansion


def expand(name: str, study: str | None, base: dict, training: dict, axes: list[Axis], source: str,
           relative_to: Path | None = None) -> Grid:
    by_name = {axis.name: axis for axis in axes}
    ordered = [by_name[a] for a in STRUCTURAL_AXES if a in by_name] + [a for a in axes if a.name not in STRUCTURAL_AXES]
    combos: list[dict[str, AxisValue]] = [{}]
    for axis in ordered:
        combos = [{**combo, axis.name: value} for combo in combos for value in axis.values]
    cells = [_cell(name, study, base, training, ordered, combo, source, len(combos), i, relative_to) for i, combo in enumerate(combos)]
    _check_unique_and_shared(cells, source)
    return Grid(name, study, source, axes, cells)


def _cell(grid: str, study: str | None, base: dict, training: dict, axes: list[Axis], combo: dict[str, AxisValue], source: str, total: int, index: int,
          relative_to: Path | None) -> Cell:
    tree = copy.deepcopy(base)
    where = f"{source}: axes"
    if "intermediate" in combo:
        tree["intermediate"] = _stage_list(combo["intermediate"].value, f"{where}.intermediate.{combo['intermediate'].label}")
    tree["intermediate"] = [_with_defaults(stage, training) for stage in tree.get("intermediate") or []]
    base_target = tree.get("target") if isinstance(tree.get("target"), dict) else {}
    if "target" in combo:
        value = combo["target"].value
        chosen = {"task": value} if isinstance(value, str) else copy.deepcopy(value)
        if isinstance(chosen.get("evaluation"), dict):  # per-target evaluation settings (languages, QA decoding)
            tree["evaluation"] = deep_merge(tree.get("evaluation") or {}, chosen.pop("evaluation"))
        chosen["training"] = deep_merge(base_target.get("training") or {}, chosen.get("training") or {})
        tree["target"] = chosen
    if isinstance(tree.get("target"), dict):
        if _trains(tree["target"].get("task")):
            tree["target"] = _with_defaults(tree["target"], training)
        elif "target" in combo:  # evaluated from an encoder: only its own settings (max_seq_length) apply
            value = combo["target"].value
            tree["target"] = {"task": value} if isinstance(value, str) else copy.deepcopy(value)
            tree["target"].pop("evaluation", None)
    if "seed" in combo:
        tree["seed"] = combo["seed"].value
    labels = {axis.name: combo[axis.name].label for axis in axes}
    intermediate = labels.get("intermediate") or stages_label(tree["intermediate"])
    target = labels.get("target") or str((tree.get("target") or {}).get("task", "?"))
    seed = tree.get("seed", 0)
    extra = [(axis.name, labels[axis.name]) for axis in axes if axis.name not in STRUCTURAL_AXES]
    cell_name = f"{grid}/{intermediate}->{target}/seed{seed}" + "".join(f"/{axis}={label}" for axis, label in extra)
    for axis in axes:
        if axis.field is not None:
            set_field(tree, axis.field, copy.deepcopy(combo[axis.name].value), origin=f"{source}: cell {cell_name}: axis {axis.name}:")
    spec_name = f"{grid}.{intermediate}-to-{target}.seed{seed}" + "".join(f".{axis}-{label}" for axis, label in extra)
    tree["name"] = _NAME_CHARS.sub("_", spec_name)
    tracking = tree.setdefault("tracking", {})
    if isinstance(tracking, dict):
        tracking.setdefault("experiment", grid)
    spec = validate_tree(tree, source=f"{source}: cell {cell_name}", relative_to=relative_to)
    return Cell(cell_name, spec, labels, grid, study, total, index)


def _check_unique_and_shared(cells: list[Cell], source: str) -> None:
    seen: dict[str, str] = {}
    for cell in cells:
        if cell.spec.name in seen:
            raise SpecError(f"{source}: cells {seen[cell.spec.name]} and {cell.name} get the same run name {cell.spec.name!r}; use distinct labels")
        seen[cell.spec.name] = cell.name
    first = cells[0]
    for dotted in SHARED_FIELDS:
        expected = _get(first.spec, dotted)
        for cell in cells[1:]:
            if _get(cell.spec, dotted) != expected:
                raise SpecError(
                    f"{source}: cell {cell.name}: {dotted} differs from cell {first.name}'s; every cell of a grid "
                    "shares its output_dir (phases), its MLflow store and its cluster"
                )


def _get(spec: ExperimentSpec, dotted: str) -> Any:
    node: Any = spec
    for key in dotted.split("."):
        node = getattr(node, key)
    return node.model_dump(mode="json") if isinstance(node, BaseModel) else node
