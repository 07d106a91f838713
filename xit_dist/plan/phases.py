"""Spec -> ordered phases, each identified by a content hash of everything that decides its
output. Phase outputs live under ``<output_dir>/phases/<id>/`` (``config/layout.py``): a phase whose
hash is already done there is reused, never trained twice."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Literal

from xit_dist.config.spec import ExperimentSpec, StageSpec, TrainingConfig, target_trains
from xit_dist.config.ds_config import load_ds_config

# Settings that change how a phase is observed, not what it produces.
_NOT_IN_HASH = {"log_every_n_steps", "checkpoint_every_n_steps", "checkpoint_every_minutes"}
PHASE_FORMAT_VERSION = "2"


@dataclass(frozen=True)
class Phase:
    kind: Literal["intermediate", "target"]
    index: int
    task: str
    training: TrainingConfig
    upstream: "Phase | None"
    hash: str

    @property
    def id(self) -> str:
        return f"{self.task}-{self.hash[:12]}"

    @property
    def saves(self) -> Literal["encoder", "model"]:
        """Intermediate phases hand on only their encoder; the target phase keeps its head for evaluation."""
        return "model" if self.kind == "target" else "encoder"


def _stage_tasks(tree) -> set[str]:
    """Every task a stage names (``task``, or ``tasks`` of a multi-task stage), wherever it sits."""
    found: set[str] = set()
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key == "task" and isinstance(value, str):
                found.add(value)
            elif key == "tasks" and isinstance(value, list):
                found.update(v for v in value if isinstance(v, str))
            found |= _stage_tasks(value)
    elif isinstance(tree, list):
        for value in tree:
            found |= _stage_tasks(value)
    return found


def phase_hash(spec: ExperimentSpec, kind: str, stage: StageSpec, upstream: Phase | None) -> str:
    """Everything that decides the phase's weights, and nothing else: the whole stage (task,
    training and any data options a stage carries), where it starts (the upstream phase's hash,
    or the pretrained model), the data sources of its own tasks only, the seed and the engine
    settings. Not the target, the evaluation or the run's name: an intermediate phase is the
    same phase under every target, so a grid trains it once."""
    dumped = stage.model_dump(mode="json", exclude={"training": _NOT_IN_HASH})
    tasks = _stage_tasks(dumped)
    content = {
        "version": PHASE_FORMAT_VERSION,
        "kind": kind,
        "stage": dumped,
        "start": upstream.hash if upstream else {"model": spec.model.model_dump(mode="json")},
        "data": {
            "local_dir": spec.data.local_dir,
            "revision": spec.data.revision,
            "task_files": {task: path for task, path in spec.data.task_files.items() if task in tasks},
        },
        "seed": spec.seed,
        "deepspeed": load_ds_config(spec.distributed.deepspeed_config),
        "num_workers": spec.distributed.num_workers,
        "bf16": spec.distributed.bf16,
    }
    if stage.training.eval_every_n_steps:
        # English-dev model selection decodes predictions (extractive QA), so these pick the kept weights.
        content["selection"] = {"n_best": spec.evaluation.n_best, "max_answer_length": spec.evaluation.max_answer_length}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def build_plan(spec: ExperimentSpec) -> list[Phase]:
    phases: list[Phase] = []
    upstream = None
    stages = [("intermediate", s) for s in spec.intermediate]
    if target_trains(spec.target.task):  # else no target phase: see encoder_evaluation
        stages.append(("target", spec.target))
    for index, (kind, stage) in enumerate(stages):
        upstream = Phase(kind, index, stage.task, stage.training, upstream, phase_hash(spec, kind, stage, upstream))
        phases.append(upstream)
    return phases


@dataclass(frozen=True)
class EncoderEvaluation:
    """A target whose format does not train (retrieval): no target phase; the encoder of
    ``upstream`` (the last intermediate phase), or the base model when ``upstream`` is None, is
    evaluated as it is. ``training`` only says how sentences are featurised (max_seq_length).
    ``hash`` names the evaluated encoder and the task, never a phase's hash, so its MLflow child
    run and its cached results (under ``phases/<id>/eval/``) are its own."""

    task: str
    training: TrainingConfig
    upstream: Phase | None
    hash: str

    @property
    def id(self) -> str:
        return f"{self.task}-{self.hash[:12]}"

    @property
    def encoder(self) -> str:
        return f"the encoder of phase {self.upstream.index + 1} ({self.upstream.id})" if self.upstream else "the base model"


def encoder_evaluation(spec: ExperimentSpec, phases: list[Phase]) -> EncoderEvaluation | None:
    """The target's evaluation straight from an encoder, or None when the target trains."""
    if target_trains(spec.target.task):
        return None
    upstream = phases[-1] if phases else None
    start = upstream.hash if upstream else {"model": spec.model.model_dump(mode="json")}
    content = {"version": PHASE_FORMAT_VERSION, "kind": "encoder-evaluation", "task": spec.target.task, "encoder": start}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()
    return EncoderEvaluation(spec.target.task, spec.target.training, upstream, digest)
