"""The experiment spec as pydantic models: every field, its default, and the checks that make
a mistake one line naming the field (``SpecError``, raised by ``xit_dist.config.load``) before
Ray starts. Reading YAML files and ``--set`` overrides is ``config.load``'s job."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xit_dist.config import layout
from xit_dist.config.training_from import resolve_training_from
from xit_dist.data.augment import AugmentOptions
from xit_dist.data.mlm import MlmOptions
from xit_dist.data.perturb import PerturbationOptions
from xit_dist.data.subsample import SubsampleOptions
from xit_dist.tasks.registry import get_task
from xit_dist.config.batch import split_batch
from xit_dist.config.ds_config import load_ds_config

BUILTIN_PREFIX = "builtin:"
STAGE_OPTION_FIELDS = ("tasks", "sampling", "temperature", "examples_cap", "subsample", "augment", "languages", "language_files", "mlm")
RETRIEVAL_MAX_SEQ_LENGTH = 512  # a target evaluated from the encoder: XTREME's and jiant's retrieval length


def target_trains(task_name: str) -> bool:
    """False for tasks whose format has no training phase (retrieval): they are evaluated from an encoder."""
    from xit_dist.tasks.formats import get_format

    return get_format(get_task(task_name).format).trains


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
    doc_stride: int = Field(128, gt=0, description="extractive QA: token overlap of the windows over a long context")
    max_query_length: int = Field(64, gt=0, description="extractive QA: question tokens kept")
    max_train_examples: int | None = Field(None, gt=0, description="first N training rows (debugging)")
    eval_every_n_steps: int | None = Field(
        None, gt=0, description="validate on English dev every N steps and keep the best weights (paper: 1000)"
    )
    eval_examples: int = Field(500, gt=0, description="English dev rows used for validation (paper: 500)")
    early_stopping_patience: int | None = Field(None, gt=0, description="stop after N validations without gain (paper: 30)")
    log_every_n_steps: int = Field(10, gt=0)
    checkpoint_every_n_steps: int | None = Field(None, gt=0, description="default: once per epoch and at the end")
    checkpoint_every_minutes: float = Field(
        30.0, ge=0, description="also checkpoint at the first log step after this many minutes without one (0: off)"
    )


class StageSpec(_Strict):
    """One intermediate-training stage: a registered task (or a mixture of several) and how to
    train on it; optionally subsampled, augmented, multilingual or mixed with MLM (the studies'
    options: ``xit_dist.data.stage``; they are part of the phase's hash)."""

    task: str = Field(..., description="a registered task; a mixture's name is its tasks joined by '+' (set from tasks)")
    training: TrainingConfig = TrainingConfig()
    training_from: str | None = Field(
        None, description="'tune:<search name>' or a best.yaml path: train with the best configuration a search found "
        "(xit-dist tune); values set under training override it"
    )
    tasks: list[str] | None = Field(None, min_length=2, description="a multi-task mixture: one head per task on a shared encoder")
    sampling: Literal["proportional", "uniform", "temperature"] = Field(
        "proportional", description="mixture: which task each step trains on (jiant's samplers)"
    )
    temperature: float = Field(2.0, gt=0, description="mixture, sampling temperature: P(task) ~ size^(1/temperature)")
    examples_cap: int | None = Field(None, gt=0, description="mixture: sizes above this count as this (jiant's cap)")
    subsample: SubsampleOptions | None = Field(None, description="keep exactly size training rows (stratified, seeded)")
    augment: AugmentOptions | None = Field(None, description="adversarial augmentation of the training rows")
    languages: list[str] | None = Field(None, min_length=1, description="training languages (en: the task's own data)")
    language_files: dict[str, str] = Field(
        default_factory=dict, description="language -> directory with the task's training data translated, in the hub layout"
    )
    mlm: MlmOptions | None = Field(None, description="mix masked-language modelling on this text into the stage")

    @model_validator(mode="before")
    @classmethod
    def _mixture_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("tasks") and "task" not in data:
            data = {**data, "task": "+".join(map(str, data["tasks"]))}
        return data

    @field_validator("task")
    @classmethod
    def _known_task(cls, name: str) -> str:
        for part in name.split("+"):
            task = get_task(part)  # raises SpecError listing the known tasks
            if task.train is None:
                raise ValueError(f"task {part!r} has no training data (it is evaluation-only)")
        return name

    @model_validator(mode="after")
    def _stage_options(self) -> "StageSpec":
        from xit_dist.data.stage import check_stage_options

        check_stage_options(self)
        return self

    def data_options(self) -> dict[str, Any]:
        """The studies' options, for the phase hash: empty for a plain stage (its hash is unchanged)."""
        fields = set(STAGE_OPTION_FIELDS)
        if all(getattr(self, name) == StageSpec.model_fields[name].get_default(call_default_factory=True) for name in fields):
            return {}
        return self.model_dump(mode="json", include=fields)


class TargetSpec(StageSpec):
    """The target task: fine-tuned on its English training set, then evaluated zero-shot.

    A task whose format does not train (retrieval: tatoeba, bucc, lareqa, mewslix) has no target
    phase: it is evaluated straight from the last intermediate phase's encoder, or from the base
    model when there is none. Its ``training`` may then set only ``max_seq_length`` (how its
    sentences are featurised; default 512, XTREME's and jiant's retrieval length): any other
    training setting that differs from its default would silently do nothing, so it is an error.
    """

    @field_validator("task")
    @classmethod
    def _known_task(cls, name: str) -> str:  # replaces StageSpec's check: evaluation-only formats are fine here
        task = get_task(name)
        if task.train is None and target_trains(name):
            raise ValueError(f"task {name!r} has no training data (it is evaluation-only)")
        return name

    @model_validator(mode="after")
    def _nothing_to_train(self) -> "TargetSpec":
        if target_trains(self.task):
            return self
        defaults = TrainingConfig()
        ignored = sorted(
            name for name in self.training.model_fields_set - {"max_seq_length"}
            if getattr(self.training, name) != getattr(defaults, name)  # a dumped spec repeats the defaults
        )
        if ignored:
            raise ValueError(
                f"training.{ignored[0]}: {self.task} is evaluated straight from the encoder (no training phase); "
                "only training.max_seq_length applies"
            )
        if "max_seq_length" not in self.training.model_fields_set:
            self.training = TrainingConfig(max_seq_length=RETRIEVAL_MAX_SEQ_LENGTH)
        return self

    @field_validator("training_from")
    @classmethod
    def _intermediate_only(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("searches tune intermediate tasks: use training_from on an intermediate stage")
        return value

    @model_validator(mode="before")
    @classmethod
    def _mixture_name(cls, data: Any) -> Any:  # replaces StageSpec's: the target is one task
        if isinstance(data, dict) and data.get("tasks"):
            raise ValueError("tasks: a mixture is an intermediate stage; the target is one task")
        return data

    @model_validator(mode="after")
    def _stage_options(self) -> "TargetSpec":  # replaces StageSpec's: the studies' data options are for intermediate stages
        for name in STAGE_OPTION_FIELDS:
            if getattr(self, name) != StageSpec.model_fields[name].get_default(call_default_factory=True):
                raise ValueError(f"{name}: only intermediate stages take {name} (the target trains on its English data)")
        return self


class EvaluationSpec(_Strict):
    split: Literal["validation", "test"] = "test"
    languages: list[str] | None = Field(None, description="default: every language of the target task")
    batch_size: int = Field(64, gt=0)
    max_examples_per_language: int | None = Field(None, gt=0)
    n_best: int = Field(20, gt=0, description="extractive QA: start/end candidates per window (XTREME: 20)")
    max_answer_length: int = Field(30, gt=0, description="extractive QA: longest answer in tokens (XTREME: 30)")
    retrieval_layer: int | None = Field(
        None, ge=0, description="retrieval: hidden_states index to pool; default XTREME's 14 of 24 layers, scaled to the model's depth"
    )
    pooling: Literal["mean", "cls"] = Field("mean", description="retrieval: sentence embedding pooling (XTREME: mean)")
    perturbations: list[PerturbationOptions] = Field(
        default_factory=list, description="also evaluate perturbed copies of each language's data (Study 4; data.perturb)"
    )
    calibration: bool = Field(False, description="ECE, Brier and reliability diagrams (extractive QA: span probability vs exact match)")

    @field_validator("perturbations")
    @classmethod
    def _unique_names(cls, value: list[PerturbationOptions]) -> list[PerturbationOptions]:
        names = [p.name for p in value]
        if len(set(names)) != len(names):
            raise ValueError(f"names {names} repeat; give each perturbation its own name")
        return value


class ModelSpec(_Strict):
    name_or_path: str = Field("builtin:xlmr-tiny", description="hub id, local directory, or builtin:<name>")
    revision: str | None = None

    @field_validator("name_or_path")
    @classmethod
    def _resolvable(cls, value: str) -> str:
        from xit_dist.builtin.models import TINY_CONFIGS

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
    task_files: dict[str, str] = Field(
        default_factory=dict,
        description="task -> directory read instead of local_dir / the hub for that task: a mirror in the hub layout, "
        "or the original release files for tasks without a usable hub copy (ccg, bucc, mewslix, lareqa)",
    )

    @field_validator("task_files")
    @classmethod
    def _task_files_exist(cls, value: dict[str, str]) -> dict[str, str]:
        for task, directory in value.items():
            get_task(task)  # SpecError naming the known tasks
            if not Path(directory).expanduser().is_dir():
                raise ValueError(f"{task}: directory not found: {directory}")
        return value

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
        load_ds_config(value)  # raises SpecError naming the file or the known names
        return value


class TrackingSpec(_Strict):
    uri: str | None = Field(None, description="MLflow tracking URI; default MLFLOW_TRACKING_URI, else sqlite under output_dir")
    experiment: str = "xit-dist"
    system_metrics_interval_s: float = Field(
        10.0, ge=0, description="seconds between MLflow system-metric samples (CPU, memory, GPU) of each node of a phase; 0: off"
    )


class ExperimentSpec(_Strict):
    name: str = Field(..., min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    seed: int = 0
    output_dir: str = Field(layout.DEFAULT_OUTPUT_DIR, description="a local or shared-filesystem path (relative: to where the command starts)")
    model: ModelSpec = ModelSpec()
    data: DataSpec = DataSpec()
    intermediate: list[StageSpec] = Field(default_factory=list)
    target: TargetSpec
    evaluation: EvaluationSpec = EvaluationSpec()
    distributed: DistributedSpec = DistributedSpec()
    tracking: TrackingSpec = TrackingSpec()

    @field_validator("output_dir")
    @classmethod
    def _a_path_or_a_bucket(cls, value: str) -> str:
        """A directory (every node mounts it, on a multi-node cluster) or a bucket (s3://)."""
        from xit_dist.config.paths import is_uri

        if not is_uri(value):
            return value
        scheme, rest = value.split("://", 1)
        if scheme == "file":
            raise ValueError("a file:// URI: write it as a plain path")
        if scheme == "gs":
            raise ValueError("gs:// is not supported yet (the phase lease rests on S3's conditional writes): use s3:// with "
                             "GCS's S3-compatible endpoint (AWS_ENDPOINT_URL=https://storage.googleapis.com, HMAC keys), or a mounted bucket")
        if scheme != "s3":
            raise ValueError(f"object storage {scheme}:// is not supported: s3:// is (or a path every node mounts)")
        if not rest.split("/", 1)[0]:
            raise ValueError(f"{value!r} names no bucket: write {scheme}://<bucket>/<prefix>")
        if "?" in value or "#" in value:
            raise ValueError(f"{value!r}: options in the URI are not supported; give the endpoint in AWS_ENDPOINT_URL")
        return value.rstrip("/")

    @model_validator(mode="before")
    @classmethod
    def _take_searched_training(cls, data: Any) -> Any:
        """Fold each intermediate stage's ``training_from`` (a search's best.yaml) into its training."""
        if not isinstance(data, dict):
            return data
        return resolve_training_from(data, cls.model_fields["output_dir"].default)

    @model_validator(mode="after")
    def _check_robustness_options(self) -> "ExperimentSpec":
        from xit_dist.evaluate.robustness import check_evaluation_options

        check_evaluation_options(get_task(self.target.task), self.evaluation)
        return self

    @model_validator(mode="after")
    def _check_cross_fields(self) -> "ExperimentSpec":
        task = get_task(self.target.task)
        if self.evaluation.languages is not None:
            known = list(dict.fromkeys([*task.languages, *(task.languages_xtreme_r or ())]))
            unknown = [lang for lang in self.evaluation.languages if lang not in known]
            if unknown:
                raise ValueError(f"evaluation.languages: {unknown} not in {task.name}'s languages {known}")
        for where, training in self._trainings():
            try:
                split_batch(training, self.distributed.num_workers)
            except ValueError as err:
                raise ValueError(f"{where}.training.batch_size: {err}") from None
        return self

    @model_validator(mode="after")
    def _check_lengths_fit_the_model(self) -> "ExperimentSpec":
        """Each trained phase's max_seq_length within the model's positions, read from its config
        without weights (a hub model whose config is not shipped is not checked here). A target
        evaluated from the encoder (retrieval) is cut to the tokenizer's limit by design."""
        from xit_dist.config.model_config import model_length_limit

        limit = model_length_limit(self.model.name_or_path)
        if limit is None:
            return self
        tokens, reason = limit
        for where, training in self._trainings():
            if training.max_seq_length > tokens:
                raise ValueError(
                    f"{where}.training.max_seq_length: {training.max_seq_length} is more than model "
                    f"{self.model.name_or_path} takes: {tokens} tokens ({reason})"
                )
        return self

    def _trainings(self):
        for i, stage in enumerate(self.intermediate):
            yield f"intermediate.{i}", stage.training
        if target_trains(self.target.task):
            yield "target", self.target.training

    def fingerprint(self, without: set[str] | None = None) -> str:
        """Content hash of the resolved spec: identifies a run for resumption (``without``: top-level
        fields left out, e.g. the seed, for what seed replicas share)."""
        tree = self.model_dump(mode="json", exclude=without)
        return hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()
