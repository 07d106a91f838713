"""The experiment spec: pydantic models, YAML loading and dotted ``--set`` overrides.

Everything a user can get wrong is caught here, before Ray starts, and reported as one
line naming the field or file (``SpecError``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xit_dist.errors import SpecError
from xit_dist.tasks import get_task, task_names
from xit_dist.train.ds_config import resolve_ds_config

BUILTIN_PREFIX = "builtin:"


class _Strict(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainingConfig(_Strict):
    """How one phase trains. Defaults follow the paper's released recipe (jiant XTREME scripts)."""

    epochs: float = Field(2.0, gt=0)
    max_steps: int | None = Field(None, gt=0, description="stop after this many optimizer steps")
    learning_rate: float = Field(1e-5, gt=0)
    batch_size: int = Field(32, gt=0, description="global batch: micro batch x accumulation x workers")
    micro_batch_size: int | None = Field(None, gt=0, description="per worker; default batch_size / num_workers")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    adam_epsilon: float = Field(1e-8, gt=0)
    max_grad_norm: float = Field(1.0, gt=0)
    max_seq_length: int = Field(256, ge=8)
    max_train_examples: int | None = Field(None, gt=0, description="first N training rows (debugging)")
    eval_every_n_steps: int | None = Field(
        None, gt=0, description="validate on English dev every N steps and keep the best weights (paper: 1000)"
    )
    eval_examples: int = Field(500, gt=0, description="English dev rows used for validation (paper: 500)")
    early_stopping_patience: int | None = Field(None, gt=0, description="stop after N validations without gain (paper: 30)")
    log_every_n_steps: int = Field(10, gt=0)
    checkpoint_every_n_steps: int | None = Field(None, gt=0, description="default: once per epoch and at the end")


class StageSpec(_Strict):
    """One intermediate-training stage: a registered task and how to train on it."""

    task: str
    training: TrainingConfig = TrainingConfig()

    @field_validator("task")
    @classmethod
    def _known_task(cls, name: str) -> str:
        task = get_task(name)  # raises SpecError listing the known tasks
        if task.train is None:
            raise ValueError(f"task {name!r} has no training data (it is evaluation-only)")
        return name


class TargetSpec(StageSpec):
    """The target task: fine-tuned on its English training set, then evaluated zero-shot."""


class EvaluationSpec(_Strict):
    split: Literal["validation", "test"] = "test"
    languages: list[str] | None = Field(None, description="default: every language of the target task")
    batch_size: int = Field(64, gt=0)
    max_examples_per_language: int | None = Field(None, gt=0)


class ModelSpec(_Strict):
    name_or_path: str = Field("builtin:xlmr-tiny", description="hub id, local directory, or builtin:<name>")
    revision: str | None = None

    @field_validator("name_or_path")
    @classmethod
    def _resolvable(cls, value: str) -> str:
        from xit_dist.model_assets import TINY_CONFIGS

        if value.startswith(BUILTIN_PREFIX):
            name = value[len(BUILTIN_PREFIX):]
            if name not in TINY_CONFIGS:
                raise ValueError(f"unknown built-in model {name!r}; known: {', '.join(sorted(TINY_CONFIGS))}")
        elif value.startswith((".", "/", "~")) and not Path(value).expanduser().is_dir():
            raise ValueError(f"model directory not found: {value}")
        return value


class DataSpec(_Strict):
    """Where data comes from: the hub (default) or a local mirror in the hubs' exact schemas."""

    local_dir: str | None = Field(
        None,
        description="'builtin:demo' (the bundled synthetic benchmark) or a directory laid out as "
        "<hub_id>/<config>/<split>.{jsonl,json,parquet,csv}",
    )
    revision: str | None = Field(None, description="hub revision (commit) for every data set")

    @field_validator("local_dir")
    @classmethod
    def _exists(cls, value: str | None) -> str | None:
        if value is None or value == "builtin:demo":
            return value
        if value.startswith(BUILTIN_PREFIX):
            raise ValueError(f"unknown built-in data {value!r}; known: builtin:demo")
        if not Path(value).expanduser().is_dir():
            raise ValueError(f"data directory not found: {value}")
        return value


class DistributedSpec(_Strict):
    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0)
    deepspeed_config: str = Field("zero2", description="a name in ds_configs/ (zero1, zero2, zero3, zero3_offload) or a path")
    bf16: bool = False
    address: str | None = Field(None, description="Ray cluster address (\"auto\", host:port); default: a new local Ray started in-process")
    max_failures: int = Field(2, ge=0, description="worker failures a phase survives, restarting from its last checkpoint")
    assume_shared_storage: bool = Field(
        False, description="output_dir is shared by every node even if its filesystem type is not recognised as such"
    )

    @field_validator("deepspeed_config")
    @classmethod
    def _ds_config_exists(cls, value: str) -> str:
        resolve_ds_config(value)  # raises SpecError naming the file or the known names
        return value


class TrackingSpec(_Strict):
    uri: str | None = Field(None, description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else sqlite under output_dir")
    experiment: str = "xit-dist"


class ExperimentSpec(_Strict):
    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    output_dir: str = "xit_runs"
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    intermediate: list[StageSpec] = Field(default_factory=list)
    target: TargetSpec
    evaluation: EvaluationSpec = EvaluationSpec()
    distributed: DistributedSpec = DistributedSpec()
    tracking: TrackingSpec = TrackingSpec()

    @model_validator(mode="after")
    def _check_cross_fields(self) -> "ExperimentSpec":
        task = get_task(self.target.task)
        if self.evaluation.languages is not None:
            unknown = [lang for lang in self.evaluation.languages if lang not in task.languages]
            if unknown:
                raise ValueError(
                    f"evaluation.languages: {unknown} not in {task.name}'s languages {list(task.languages)}"
                )
        for where, training in self._trainings():
            micro = training.micro_batch_size or training.batch_size // self.distributed.num_workers
            if micro < 1 or training.batch_size % (micro * self.distributed.num_workers):
                raise ValueError(
                    f"{where}.training.batch_size: {training.batch_size} is not a multiple of "
                    f"micro_batch_size x num_workers ({micro} x {self.distributed.num_workers})"
                )
        return self

    def _trainings(self):
        for i, stage in enumerate(self.intermediate):
            yield f"intermediate.{i}", stage.training
        yield "target", self.target.training

    def fingerprint(self) -> str:
        """Content hash of the resolved spec: identifies a run for resumption."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


# ---------------------------------------------------------------------------------- loading


def apply_override(tree: dict, assignment: str) -> None:
    """Apply one ``key.sub.0.field=value`` override; the value is parsed as YAML (typed)."""
    if "=" not in assignment:
        raise SpecError(f"--set {assignment!r}: expected KEY=VALUE")
    dotted, raw = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    if not all(keys):
        raise SpecError(f"--set {assignment!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    node: Any = tree
    for depth, key in enumerate(keys[:-1]):
        node = _descend(node, key, ".".join(keys[: depth + 1]))
    last = keys[-1]
    if isinstance(node, list):
        index = _list_index(node, last, dotted)
        node[index] = value
    else:
        node[last] = value


def _descend(node: Any, key: str, where: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, key, where)]
    if not isinstance(node, dict):
        raise SpecError(f"--set {where}: not a mapping")
    return node.setdefault(key, {})


def _list_index(node: list, key: str, where: str) -> int:
    if not key.isdigit() or int(key) >= len(node):
        raise SpecError(f"--set {where}: list index {key!r} out of range (length {len(node)})")
    return int(key)


def load_spec(path: str | Path, overrides: list[str] | None = None) -> ExperimentSpec:
    """Read a YAML spec, apply overrides, validate. Raises SpecError with one line."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: spec file not found")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(f"{path}:{where}: invalid YAML: {problem}") from None
    if not isinstance(tree, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got {type(tree).__name__}")
    for assignment in overrides or []:
        apply_override(tree, assignment)
    return validate_tree(tree, source=str(path))


def validate_tree(tree: dict, source: str = "spec") -> ExperimentSpec:
    try:
        return ExperimentSpec.model_validate(tree)
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
    "ExperimentSpec",
    "StageSpec",
    "TargetSpec",
    "TrainingConfig",
    "load_spec",
    "dump_spec",
    "apply_override",
    "task_names",
]
