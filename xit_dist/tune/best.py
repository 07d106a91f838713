"""The best configuration of a search, and how experiment specs use it.

The best trial is picked among the trials that trained to the end, by the objective (the English
dev score of the weights each kept): a trial ASHA stopped was scored after less training and is
not a candidate. It is written to ``<output_dir>/searches/<name>/best.yaml`` (the trial's whole
training configuration, and which of its values were searched) and logged to the search's MLflow
parent run. An experiment spec's intermediate stage takes it with
``training_from: tune:<name>`` (or a path to such a file): its values become the stage's
training, and whatever the stage sets under ``training`` overrides them.

This module reads plain YAML only (no spec imports): ``xit_dist.config.spec`` calls it while validating.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from xit_dist.errors import SpecError

BEST_FILE = "best.yaml"
TUNE_PREFIX = "tune:"
SEARCHES_DIR = "searches"


@dataclass
class TrialOutcome:
    number: int
    trial_id: str
    state: Literal["completed", "pruned", "failed", "unfinished"]
    value: float | None          # the objective: kept weights' score (completed), last score (pruned)
    step: int | None             # optimizer steps trained when the trial ended
    searched: dict[str, Any]     # the sampled values
    training: dict[str, Any]     # the trial's whole training configuration


def pick_best(outcomes: list[TrialOutcome], mode: str) -> TrialOutcome | None:
    """The best completed trial; ties go to the earlier trial."""
    candidates = [o for o in outcomes if o.state == "completed" and o.value is not None]
    if not candidates:
        return None
    sign = 1 if mode == "max" else -1
    return min(candidates, key=lambda o: (-sign * o.value, o.number))


def best_document(search_name: str, intermediate: str, metric: str, mode: str, best: TrialOutcome, command: str) -> str:
    body = {
        "search": search_name,
        "intermediate": intermediate,
        "metric": metric,
        "mode": mode,
        "value": best.value,
        "trial": best.number,
        "searched": best.searched,
        "training": best.training,
    }
    header = (
        f"# The best configuration found by `{command}` (written by it; do not edit).\n"
        f"# Use it in an experiment spec run with `xit-dist run SPEC`: an intermediate stage with task {intermediate}\n"
        f"# and `training_from: {TUNE_PREFIX}{search_name}` trains with these values.\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False)


def best_file(reference: str, output_dir: str | Path) -> Path:
    """``tune:<name>`` -> the search's best.yaml under output_dir; anything else is a path."""
    if reference.startswith(TUNE_PREFIX):
        name = reference[len(TUNE_PREFIX):]
        return Path(output_dir).expanduser().resolve() / SEARCHES_DIR / name / BEST_FILE
    return Path(reference).expanduser()


def read_best(reference: str, output_dir: str | Path) -> dict[str, Any]:
    path = best_file(reference, output_dir)
    if not path.is_file():
        hint = " (run `xit-dist tune` on that search first)" if reference.startswith(TUNE_PREFIX) else ""
        raise SpecError(f"{reference}: no best configuration at {path}{hint}")
    from xit_dist.config.spec import read_spec_text

    try:
        document = yaml.safe_load(read_spec_text(path, f"{reference}: {path}"))
    except yaml.YAMLError:
        raise SpecError(f"{reference}: {path} is not valid YAML") from None
    if not isinstance(document, dict) or not isinstance(document.get("training"), dict) or "intermediate" not in document:
        raise SpecError(f"{reference}: {path} is not a best configuration written by xit-dist tune")
    return document


def resolve_training_from(tree: dict[str, Any], default_output_dir: str) -> dict[str, Any]:
    """A spec tree with each intermediate stage's ``training_from`` folded into its ``training``
    (the stage's own values win). Returns a new tree; the input is not changed."""
    stages = tree.get("intermediate")
    if not isinstance(stages, list) or not any(isinstance(s, dict) and s.get("training_from") for s in stages):
        return tree
    output_dir = tree.get("output_dir") or default_output_dir
    resolved = []
    for index, stage in enumerate(stages):
        if isinstance(stage, dict) and stage.get("training_from"):
            reference = stage["training_from"]
            where = f"intermediate.{index}.training_from"
            try:
                best = read_best(str(reference), output_dir)
            except SpecError as err:
                raise SpecError(f"{where}: {err}") from None
            if best["intermediate"] != stage.get("task"):
                raise SpecError(f"{where}: {reference} was searched for task {best['intermediate']}, this stage trains {stage.get('task')}")
            stage = {**stage, "training": {**best["training"], **(stage.get("training") or {})}}
        resolved.append(stage)
    return {**tree, "intermediate": resolved}


def describe_training_from(reference: str, output_dir: str | Path, training: dict[str, Any]) -> list[str]:
    """Plan lines: which values a stage took from a search, and which it sets itself."""
    best = read_best(reference, output_dir)
    taken = {k: v for k, v in best["training"].items() if training.get(k) == v}
    overridden = {k: (training.get(k), v) for k, v in best["training"].items() if training.get(k) != v}
    searched = ", ".join(f"{k}={taken[k]}" for k in best.get("searched", {}) if k in taken) or "none"
    lines = [
        f"  training from {reference} ({best_file(reference, output_dir)}): trial {best.get('trial')}, "
        f"{best.get('metric')} {best.get('value')}",
        f"    searched values taken: {searched}; {len(taken) - sum(k in taken for k in best.get('searched', {}))} other fields as the trial had them",
    ]
    if overridden:
        lines.append("    set here instead: " + ", ".join(f"{k}={mine} (search: {theirs})" for k, (mine, theirs) in overridden.items()))
    return lines
