"""One trial of a search, run by Ray Tune in its own actor (a Train V2 driver function).

The trial trains exactly what an experiment run would (``run_phase``: a ``TorchTrainer`` whose
workers run DeepSpeed), with the sampled training settings, in the trial's own directory
(``<search>/trials/<number>/``, so trials never share a phase directory even when two of them
draw the same values). Its workers' reports that carry the objective (``dev.<metric>`` at each
English-dev validation) are forwarded to Tune as they happen, so ASHA can stop the trial between
validations. The final result (the kept weights' score, marked ``finished``) is reported by the
trial itself once everything it logs is logged: Tune may stop a trial on any result it gets.

A trial restarted after ``xit-dist tune --resume`` continues from its phase's last checkpoint
(same Ray Train run name and storage); one whose phase had already finished reports its final
result from the phase record.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune.integration.ray_train import TuneReportCallback

from xit_dist.errors import XitError
from xit_dist.tune.optuna_search import FINISHED_KEY, STEP_KEY, TRIAL_NUMBER, VALUES, decided_trial

if TYPE_CHECKING:
    from xit_dist.plan.preflight import ResolvedInputs
    from xit_dist.tune.search_spec import SearchSpec

TRIAL_TAG = "xit.trial_number"   # identifies a trial's MLflow child run under the search's parent run


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its sampled values (sent once through Ray's object store)."""

    search: SearchSpec
    inputs: ResolvedInputs
    tracking_uri: str
    experiment: str
    artifact_root: str | None
    parent_run_id: str


def trial_dir(search_dir: Path, number: int) -> Path:
    return search_dir / "trials" / f"{number:04d}"


def trial_run_name(number: int) -> str:
    return f"trial-{number:03d}"


class ObjectiveToTune(TuneReportCallback):
    """Forwards rank 0's validation reports to Tune. The others (training loss every few steps,
    plain checkpoints) would fail Tune's check that every result has the metric the searcher and
    scheduler use; the final one is the trial's to send (``final_result``)."""

    def __init__(self, metric: str):
        super().__init__()
        self.metric = metric

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        if metrics and self.metric in metrics[0] and FINISHED_KEY not in metrics[0]:
            super().after_report(run_context, metrics, checkpoint)


def final_result(record: dict[str, Any], metric: str) -> dict[str, Any]:
    """The final report of a finished phase, rebuilt from its record (``phase.json``)."""
    return {STEP_KEY: record["global_step"], FINISHED_KEY: 1, metric: record["best_score"]}


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Tune's trainable: ``config`` holds the trial's Optuna number and its sampled values."""
    import ray.tune
    from optuna.trial import TrialState

    from xit_dist.console import quiet_third_party
    from xit_dist.plan.phases import build_plan, phase_dir
    from xit_dist.run.session import evaluate_target, phase_job
    from xit_dist.tracking.store import Tracker, flatten
    from xit_dist.train.phase import PhaseResources, run_phase

    quiet_third_party()
    search, inputs = context.search, context.inputs
    number, values = config[TRIAL_NUMBER], config[VALUES]
    decided = decided_trial(search.search_dir(), search.name, number)
    if decided is not None and decided.state != TrialState.COMPLETE:
        # Pruned (or failed) before the driver was killed, restarted by Tune since: replay the
        # study's decision instead of training on. (A completed one reports from its record.)
        if decided.state == TrialState.PRUNED and decided.last_step is not None:
            ray.tune.report({STEP_KEY: decided.last_step, search.objective_metric: decided.value})
            return
        raise XitError(f"trial {number} already {decided.state.name.lower()} in the study")
    out = trial_dir(search.search_dir(), number)
    spec = search.trial_spec(values, out)
    phases = build_plan(spec)
    tracker = Tracker(context.tracking_uri, context.experiment, Path(context.artifact_root) if context.artifact_root else None)
    tags = {"xit.search": search.name, "xit.intermediate": search.intermediate, "xit.kind": "trial"}
    run_id = tracker.nested_run(context.parent_run_id, trial_run_name(number), TRIAL_TAG, str(number), tags)
    tracker.log_params(run_id, {"trial.number": str(number), **flatten(phases[0].training.model_dump(), "training.")})
    distributed = spec.distributed
    resources = PhaseResources(
        distributed.num_workers, distributed.use_gpu, distributed.cpus_per_worker, distributed.max_failures, str(out / "ray")
    )

    init_dir = inputs.model_dir
    if search.objective_task:
        # The searched intermediate phase first, in a run of its own nested under the trial's,
        # so that its per-step metrics do not mix with the objective phase's.
        intermediate = phases[0]
        sub_run = tracker.child_run(run_id, f"{trial_run_name(number)}:{intermediate.task}", intermediate.hash, {**tags, "xit.kind": "intermediate"})
        done = run_phase(phase_job(spec, intermediate, init_dir, inputs, context.tracking_uri, sub_run), intermediate.saves, phase_dir(spec, intermediate), resources)
        tracker.finish(sub_run)
        init_dir = str(done.output_dir)
    objective = phases[-1] if search.objective_task else phases[0]
    metric = search.objective_metric
    outcome = run_phase(
        phase_job(spec, objective, init_dir, inputs, context.tracking_uri, run_id),
        objective.saves,
        phase_dir(spec, objective),
        resources,
        callbacks=(ObjectiveToTune(metric),),
    )
    if "best_score" not in outcome.record:
        raise XitError(f"trial {number}: no English-dev validation ran: eval_every_n_steps is above the phase's {outcome.record.get('global_step')} steps")
    if search.objective_task:
        # Zero-shot scores of the kept weights on every evaluation language's dev set; only
        # English decides (the objective), the others are there to look at.
        results = evaluate_target(spec, objective, outcome, inputs, resources.storage_path)
        tracker.log_metrics(run_id, {f"dev.{key}": value for key, value in results.mlflow_metrics().items()}, step=outcome.record["global_step"])
    ray.tune.report(final_result(outcome.record, metric))
