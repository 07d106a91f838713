"""The search spec (YAML): which intermediate task to tune, on top of which experiment spec,
over which training fields and ranges, how many trials, the objective, ASHA and the resources
of one trial. Strict like the experiment spec: a mistake is one line naming the field, found
before Ray starts (every end of every range is checked against the experiment spec's rules).

What a trial trains (``trial_tree``): the base spec with a single intermediate stage, the
searched task (with the options of the base spec's stage for that task, if it has one: data
subsampling, augmentation, ...), whose training is, in order of precedence, the sampled values,
this spec's ``training``, that stage's training, the defaults. The objective is
that phase's English dev score (``dev.<metric>``, measured every ``eval_every_n_steps``). With
``objective_task``, a trial trains the intermediate phase and then that task's phase from it, and
the objective is the second phase's English dev score: the transfer the search is for.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from xit_dist.errors import SpecError
from xit_dist.config.load import apply_overrides, format_validation_error, read_yaml_mapping, resolve_paths, validate_model
from xit_dist.config.spec import ExperimentSpec, TrainingConfig
from xit_dist.config import layout
from xit_dist.tasks.registry import get_task

# Fields a search must not vary: they change how a trial is observed (and so the objective
# itself), not how it trains.
NOT_SEARCHABLE = {"eval_every_n_steps", "eval_examples", "log_every_n_steps", "checkpoint_every_n_steps", "checkpoint_every_minutes"}
# ASHA's rung ladder needs an upper bound; trials are never stopped for reaching it.
DEFAULT_MAX_T = 100_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ParamRange(_Strict):
    """Exactly one of: ``loguniform: [lo, hi]``, ``uniform: [lo, hi]``, ``int: [lo, hi]``
    (both ends included), ``choice: [a, b, ...]``."""

    loguniform: tuple[float, float] | None = None
    uniform: tuple[float, float] | None = None
    int_: tuple[int, int] | None = Field(None, alias="int")
    choice: list[Any] | None = Field(None, min_length=1)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _one_kind(self) -> "ParamRange":
        given = [kind for kind in ("loguniform", "uniform", "int_", "choice") if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of loguniform, uniform, int, choice")
        bounds = self.bounds
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"lower bound {bounds[0]} must be below upper bound {bounds[1]}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform bounds must be positive")
        return self

    @property
    def bounds(self) -> tuple[float, float] | None:
        return self.loguniform or self.uniform or self.int_

    def extremes(self) -> list[Any]:
        """The values to check against the experiment spec's rules: each end, or each choice."""
        return list(self.choice) if self.choice is not None else list(self.bounds)

    def optuna_distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.loguniform is not None:
            return FloatDistribution(*self.loguniform, log=True)
        if self.uniform is not None:
            return FloatDistribution(*self.uniform)
        if self.int_ is not None:
            return IntDistribution(*self.int_)
        return CategoricalDistribution(self.choice)


class AshaSpec(_Strict):
    """ASHA (asynchronous successive halving), measured in optimizer steps of the objective phase."""

    grace_period: int | None = Field(
        None, gt=0, description="steps every trial gets before it can be stopped; default two English-dev validations"
    )
    reduction_factor: float = Field(3.0, gt=1, description="1/reduction_factor of the trials at a rung go on")
    max_t: int | None = Field(
        None, gt=0, description="bounds the rung ladder (default: the objective phase's max_steps, else 100000); "
        "trials are never stopped for reaching it"
    )
    brackets: int = Field(1, ge=1)


class StopSpec(_Strict):
    """When the search stops asking for trials before num_samples (tune/stopping.py); trials
    already running finish. Not part of the search's identity: a resumed search may change it."""

    no_improvement_trials: int | None = Field(
        None, ge=1, description="stop after this many completed trials in a row that do not beat the best one"
    )
    time_budget_s: float | None = Field(None, gt=0, description="start no trial once the search has run this long (all its runs together)")


class TrialResources(_Strict):
    """One trial's Ray Train workers; default: the base spec's ``distributed`` settings."""

    num_workers: int | None = Field(None, ge=1)
    cpus_per_worker: float | None = Field(None, gt=0)
    use_gpu: bool | None = None


class SearchSpec(_Strict):
    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="the search's directory and MLflow run name")
    base: str | dict[str, Any] = Field(
        ..., description="the experiment spec trials start from: a path (relative to this file) or the spec inline"
    )
    intermediate: str = Field(..., description="the intermediate task whose training is searched")
    objective_task: str | None = Field(
        None, description="optional: train this task after the intermediate one; its English dev score is the objective"
    )
    training: dict[str, Any] = Field(default_factory=dict, description="fixed training settings of the searched phase")
    objective_training: dict[str, Any] = Field(
        default_factory=dict, description="training settings of the objective_task phase (same for every trial)"
    )
    space: dict[str, ParamRange] = Field(..., min_length=1, description="TrainingConfig field -> range")
    num_samples: int = Field(..., ge=1, description="number of trials")
    metric: str | None = Field(None, description="default dev.<metric of the objective task>, the only one trials report")
    mode: Literal["max", "min"] = "max"
    seed: int = Field(0, description="seeds Optuna's TPE sampler")
    scheduler: AshaSpec = AshaSpec()
    max_concurrent_trials: int | None = Field(None, ge=1, description="default: as many trials as the cluster holds")
    stop: StopSpec = StopSpec()
    resources: TrialResources = TrialResources()

    @field_validator("intermediate")
    @classmethod
    def _trainable(cls, name: str) -> str:
        return _trainable_with_dev(name)

    @field_validator("objective_task")
    @classmethod
    def _objective_trainable(cls, name: str | None) -> str | None:
        return None if name is None else _trainable_with_dev(name)

    @field_validator("training", "objective_training")
    @classmethod
    def _known_fields(cls, values: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(values) - set(TrainingConfig.model_fields))
        if unknown:
            raise ValueError(f"unknown training field(s) {unknown}")
        return values

    @field_validator("space")
    @classmethod
    def _searchable(cls, space: dict[str, ParamRange]) -> dict[str, ParamRange]:
        for field in space:
            if field not in TrainingConfig.model_fields:
                raise ValueError(f"{field!r} is not a training field; known: {', '.join(TrainingConfig.model_fields)}")
            if field in NOT_SEARCHABLE:
                raise ValueError(f"{field!r} decides how trials are measured, not how they train: set it under training")
        return space

    # ------------------------------------------------------------------ derived
    @property
    def objective_phase_task(self) -> str:
        return self.objective_task or self.intermediate

    @property
    def objective_metric(self) -> str:
        return self.metric or f"dev.{get_task(self.objective_phase_task).metric}"

    def base_tree(self) -> dict[str, Any]:
        if not isinstance(self.base, dict):
            raise SpecError("base: not resolved (load search specs with load_search_spec)")
        return copy.deepcopy(self.base)

    def base_spec(self) -> ExperimentSpec:
        return _validated(self.base_tree(), "base")

    def trial_tree(self, values: dict[str, Any], output_dir: str | Path | None = None) -> dict[str, Any]:
        """The experiment spec one trial trains, as a tree: see the module docstring."""
        tree = self.base_tree()
        stages = [s for s in tree.get("intermediate") or [] if isinstance(s, dict) and s.get("task") == self.intermediate]
        stage = stages[0] if stages else {"task": self.intermediate}  # its data options come along
        training = {**(stage.get("training") or {}), **self.training, **values}
        tree["intermediate"] = [{**stage, "training": training}]
        if self.objective_task:
            base_target = tree.get("target") or {}
            target_training = (base_target.get("training") or {}) if base_target.get("task") == self.objective_task else {}
            tree["target"] = {"task": self.objective_task, "training": {**target_training, **self.objective_training}}
            evaluation = tree.setdefault("evaluation", {})
            evaluation["split"] = "validation"  # per-language dev scores; never the test sets
            evaluation["languages"] = _known_languages(evaluation.get("languages"), self.objective_task)
        distributed = tree.setdefault("distributed", {})
        distributed.update(self.resources.model_dump(exclude_none=True))
        if output_dir is not None:
            tree["output_dir"] = str(output_dir)
        return tree

    def trial_spec(self, values: dict[str, Any], output_dir: str | Path | None = None) -> ExperimentSpec:
        return _validated(self.trial_tree(values, output_dir), "trial")

    def objective_training_config(self, spec: ExperimentSpec) -> TrainingConfig:
        return spec.target.training if self.objective_task else spec.intermediate[0].training

    def asha_grace_period(self, spec: ExperimentSpec) -> int:
        every = self.objective_training_config(spec).eval_every_n_steps
        return self.scheduler.grace_period or 2 * every

    def asha_max_t(self, spec: ExperimentSpec) -> int:
        return self.scheduler.max_t or self.objective_training_config(spec).max_steps or DEFAULT_MAX_T

    def output_root(self) -> Path:
        """The base spec's output_dir, absolute since ``resolve_search_tree``: a trial,
        which runs in its own working directory, finds the same one."""
        return layout.output_root(self.trial_spec({}).output_dir)

    def search_dir(self) -> Path:
        return layout.search_dir(self.output_root(), self.name)

    def fingerprint(self) -> str:
        """Identifies a search: a resumed search must be the same search (its stop rules may differ)."""
        identity = self.model_dump(mode="json", by_alias=True, exclude={"stop"})
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def check(self) -> None:
        """The base and every end of every range must make valid specs; the objective must be measurable."""
        self.base_spec()
        spec = self.trial_spec({})
        which = "objective_training" if self.objective_task else "training"
        training = self.objective_training_config(spec)
        if training.eval_every_n_steps is None:
            raise SpecError(
                f"{which}.eval_every_n_steps: required by a search: the objective is the English dev score, "
                "measured every N steps (ASHA compares trials at those validations)"
            )
        reported = f"dev.{get_task(self.objective_phase_task).metric}"
        if self.objective_metric != reported:
            raise SpecError(f"metric: trials report {reported} (English dev of {self.objective_phase_task}), not {self.objective_metric}")
        if self.scheduler.grace_period and self.scheduler.max_t and self.scheduler.grace_period > self.scheduler.max_t:
            raise SpecError(f"scheduler.grace_period: {self.scheduler.grace_period} is above scheduler.max_t {self.scheduler.max_t}")
        for field, param in self.space.items():
            for value in param.extremes():
                try:
                    self.trial_spec({field: value})
                except SpecError as err:
                    problem = str(err).removeprefix("trial: ")
                    raise SpecError(f"space.{field}: the value {value!r} makes an invalid trial: {problem}") from None


def _trainable_with_dev(name: str) -> str:
    task = get_task(name)  # SpecError listing the known tasks
    if task.train is None:
        raise ValueError(f"task {name!r} has no training data")
    if task.dev is None:
        raise ValueError(f"task {name!r} has no English dev set to score trials on")
    return name


def _known_languages(languages: list[str] | None, task_name: str) -> list[str] | None:
    """The base spec's evaluation languages, kept where the objective task has them."""
    if languages is None:
        return None
    known = [lang for lang in languages if lang in get_task(task_name).languages]
    return known or None


def _validated(tree: dict[str, Any], what: str) -> ExperimentSpec:
    try:
        return ExperimentSpec.model_validate(tree)
    except ValidationError as err:
        raise SpecError(f"{what}: {format_validation_error(err).removeprefix('spec: ')}") from None


def load_search_spec(path: str | Path, overrides: list[str] | None = None) -> SearchSpec:
    """Read a search spec, resolve ``base`` (a path is read relative to the search spec's
    directory and inlined, so the spec's fingerprint covers it and ``--set base.x=...`` works),
    apply ``--set`` overrides, check it."""
    path = Path(path)
    tree = apply_overrides(_inline_base(read_yaml_mapping(path), path.parent), overrides)
    return resolve_search_tree(tree, path.parent, str(path))


def _inline_base(tree: dict[str, Any], relative_to: Path) -> dict[str, Any]:
    if isinstance(tree.get("base"), str):
        base_path = Path(tree["base"]).expanduser()
        tree = {**tree, "base": read_yaml_mapping(base_path if base_path.is_absolute() else relative_to / base_path, what="base")}
    return tree


def resolve_search_tree(tree: dict[str, Any], relative_to: Path, source: str = "search spec") -> SearchSpec:
    """``base`` read (a path is relative to ``relative_to``, the search spec's directory) and its
    own paths (output_dir, data, ...) made absolute against the directory the command started
    in, as an experiment spec's are: on the driver, because each trial runs in a working
    directory of Tune's. Then validated and checked."""
    tree = _inline_base(tree, relative_to)
    if isinstance(tree.get("base"), dict):
        tree = {**tree, "base": resolve_paths(tree["base"])}
    spec = validate_model(SearchSpec, tree, source)
    try:
        spec.check()
    except SpecError as err:
        raise SpecError(f"{source}: {err}") from None
    return spec


def cluster_concurrency(spec: ExperimentSpec, resources: dict[str, float]) -> int:
    """How many trials the cluster holds at once: each needs its workers' CPUs (and GPUs)."""
    distributed = spec.distributed
    fits = math.floor(resources.get("CPU", 0) / (distributed.num_workers * distributed.cpus_per_worker) + 1e-9)
    if distributed.use_gpu:
        fits = min(fits, math.floor(resources.get("GPU", 0) / distributed.num_workers + 1e-9))
    return max(fits, 0)
