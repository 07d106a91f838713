"""Spec -> ordered phases, each identified by a content hash of everything that decides its
output. Phase outputs live under ``<output_dir>/phases/<id>/``: a phase whose hash is already
done there is reused, never trained twice."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from xit_dist.spec import ExperimentSpec, TrainingConfig
from xit_dist.train.ds_config import load_ds_config, resolve_ds_config

# Settings that change how a phase is observed, not what it produces.
_NOT_IN_HASH = {"log_every_n_steps", "checkpoint_every_n_steps"}
PHASE_FORMAT_VERSION = "1"


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


def phase_hash(spec: ExperimentSpec, kind: str, task: str, training: TrainingConfig, upstream: Phase | None) -> str:
    content = {
        "version": PHASE_FORMAT_VERSION,
        "kind": kind,
        "task": task,
        "training": training.model_dump(mode="json", exclude=_NOT_IN_HASH),
        "start": upstream.hash if upstream else {"model": spec.model.model_dump(mode="json")},
        "data": spec.data.model_dump(mode="json"),
        "seed": spec.seed,
        "deepspeed": load_ds_config(resolve_ds_config(spec.distributed.deepspeed_config)),
        "num_workers": spec.distributed.num_workers,
        "bf16": spec.distributed.bf16,
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def build_plan(spec: ExperimentSpec) -> list[Phase]:
    phases: list[Phase] = []
    upstream = None
    stages = [("intermediate", s.task, s.training) for s in spec.intermediate]
    stages.append(("target", spec.target.task, spec.target.training))
    for index, (kind, task, training) in enumerate(stages):
        upstream = Phase(kind, index, task, training, upstream, phase_hash(spec, kind, task, training, upstream))
        phases.append(upstream)
    return phases


def phases_root(spec: ExperimentSpec) -> Path:
    return Path(spec.output_dir).expanduser().resolve() / "phases"


def phase_dir(spec: ExperimentSpec, phase: Phase) -> Path:
    return phases_root(spec) / phase.id
