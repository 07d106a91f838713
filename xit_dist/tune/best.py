"""The best configuration of a search: which trial it is, and the ``best.yaml`` that records it.

The best trial is picked among the trials that trained to the end, by the objective (the English
dev score of the weights each kept): a trial ASHA stopped was scored after less training and is
not a candidate. It is written to ``<output_dir>/searches/<name>/best.yaml`` (the trial's whole
training configuration, and which of its values were searched) and logged to the search's MLflow
parent run. An experiment spec's intermediate stage takes it with
``training_from: tune:<name>`` (or a path to such a file): its values become the stage's
training, and whatever the stage sets under ``training`` overrides them. Reading it back into a
spec is ``xit_dist.config.training_from``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import yaml

from xit_dist.config.training_from import TUNE_PREFIX


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
