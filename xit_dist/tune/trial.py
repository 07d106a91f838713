"""One trial of a search, run by Ray Tune in its own actor (a Train V2 driver function).

A trial is a one-spec run built on ``run/``: the trial's spec (the sampled training settings) is
planned by ``run.session`` in the trial's own directory (``<search>/trials/<number>/``, so
trials never share a phase directory even when two of them draw the same values), its jobs are
built by ``run.jobs`` and its phases trained with the run's resources (``session.train_phase``:
a ``TorchTrainer`` whose workers run DeepSpeed), its MLflow runs opened by ``run.runs``.

What Tune sees: the workers call ``ray.train.report`` only when they write a checkpoint (every
``checkpoint_every_n_steps``, on the timed checkpoint clock, at each English-dev validation, and
once at the end); training metrics go to MLflow, never through Ray. ``ObjectiveToTune`` forwards
the reports that carry the objective (``dev.<metric>``: a validation's checkpoint) as they
happen, so ASHA can stop the trial between validations; the others would fail Tune's check that
every result holds the metric. The workers' final report is not forwarded either: the trial
reports the final result (the kept weights' score, marked ``finished``) itself, once everything
it logs is logged, since Tune may stop a trial on any result it gets.

A trial restarted after ``xit-dist tune --resume`` continues from its phase's last checkpoint
(same Ray Train run name and storage); one whose phase had already finished reports its final
result from the phase record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ray.tune.integration.ray_train import TuneReportCallback

from xit_dist.tracking.object_files import shared_location
from xit_dist.errors import XitError
from xit_dist.config.layout import trial_dir
from xit_dist.tracking.tags import TRIAL_KIND
from xit_dist.tune.optuna_search import FINISHED_KEY, STEP_KEY, TRIAL_NUMBER, VALUES, decided_trial

if TYPE_CHECKING:
    from xit_dist.plan.phases import Phase
    from xit_dist.plan.preflight import ResolvedInputs
    from xit_dist.run.session import PreparedRun
    from xit_dist.tracking.store import Tracker
    from xit_dist.train.phase import PhaseOutcome
    from xit_dist.tune.search_spec import SearchSpec


@dataclass(frozen=True)
class TrialContext:
    """What every trial needs besides its sampled values (sent once through Ray's object store)."""

    search: SearchSpec
    inputs: ResolvedInputs
    tracking_uri: str
    experiment: str
    output_dir: str     # the search's output_dir: where the MLflow store keeps its artifacts
    parent_run_id: str


class ObjectiveToTune(TuneReportCallback):
    """Forwards rank 0's reports that carry the objective (a validation's checkpoint) to Tune.
    The other reports (plain checkpoints) would fail Tune's check that every result has the
    metric the searcher and scheduler use; the final one is the trial's to send (``final_result``)."""

    def __init__(self, metric: str):
        super().__init__()
        self.metric = metric

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        if metrics and self.metric in metrics[0] and FINISHED_KEY not in metrics[0]:
            super().after_report(run_context, metrics, checkpoint)


def final_result(record: dict[str, Any], metric: str) -> dict[str, Any]:
    """The final report of a finished phase, rebuilt from its record (``phase.json``)."""
    return {STEP_KEY: record["global_step"], FINISHED_KEY: 1, metric: record["best_score"]}


def replay_decided(search: SearchSpec, number: int) -> bool:
    """A trial pruned (or failed) before the driver was killed and restarted by Tune since:
    replay the study's decision instead of training on. True when it was replayed; a completed
    trial reports from its phase record instead."""
    import ray.tune
    from optuna.trial import TrialState

    decided = decided_trial(search.search_dir(), search.name, number)
    if decided is None or decided.state == TrialState.COMPLETE:
        return False
    if decided.state == TrialState.PRUNED and decided.last_step is not None:
        ray.tune.report({STEP_KEY: decided.last_step, search.objective_metric: decided.value})
        return True
    raise XitError(f"trial {number} already {decided.state.name.lower()} in the study")


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Tune's trainable: ``config`` holds the trial's Optuna number and its sampled values."""
    import ray.tune

    from xit_dist.console import quiet_third_party
    from xit_dist.run.runs import open_trial_run, search_tags
    from xit_dist.run.session import open_tracker, prepared_run

    quiet_third_party()
    search, number = context.search, config[TRIAL_NUMBER]
    if replay_decided(search, number):
        return
    spec = search.trial_spec(config[VALUES], shared_location(trial_dir(search.search_dir(), number)))
    run = prepared_run(spec, context.inputs, context.tracking_uri)
    tracker = open_tracker(context.tracking_uri, context.experiment, context.output_dir)
    tags = search_tags(search.name, search.intermediate, TRIAL_KIND)
    objective = run.phases[-1] if search.objective_task else run.phases[0]
    run_id = open_trial_run(tracker, context.parent_run_id, number, tags, run.phases[0])
    if search.objective_task:
        train_searched_intermediate(tracker, run, run_id, number, tags)
    outcome = train_objective(run, objective, run_id, search.objective_metric)
    tracker.log_datasets(run_id, outcome.record.get("datasets") or [])  # what the trial trained on
    if "best_score" not in outcome.record:
        raise XitError(f"trial {number}: no English-dev validation ran: eval_every_n_steps is above the phase's {outcome.record.get('global_step')} steps")
    if search.objective_task:
        log_zero_shot_dev(tracker, run, objective, outcome, run_id)
    ray.tune.report(final_result(outcome.record, search.objective_metric))


def train_searched_intermediate(tracker: Tracker, run: PreparedRun, trial_run: str, number: int, tags: dict[str, str]) -> None:
    """The searched intermediate phase first, in a run of its own nested under the trial's, so
    that its per-step metrics do not mix with the objective phase's."""
    from xit_dist.run.jobs import phase_job
    from xit_dist.run.runs import open_trial_phase_run
    from xit_dist.run.session import train_phase

    intermediate = run.phases[0]
    sub_run = open_trial_phase_run(tracker, trial_run, number, tags, intermediate)
    outcome = train_phase(run, intermediate, phase_job(run.spec, intermediate, run.init_dir(intermediate), run.inputs, run.tracking_uri, sub_run))
    tracker.log_datasets(sub_run, outcome.record.get("datasets") or [])
    tracker.finish(sub_run)


def train_objective(run: PreparedRun, objective: Phase, run_id: str, metric: str) -> PhaseOutcome:
    """The phase whose English-dev score is the objective, its validations forwarded to Tune."""
    from xit_dist.run.jobs import phase_job
    from xit_dist.run.session import train_phase

    job = phase_job(run.spec, objective, run.init_dir(objective), run.inputs, run.tracking_uri, run_id)
    return train_phase(run, objective, job, callbacks=(ObjectiveToTune(metric),))


def log_zero_shot_dev(tracker: Tracker, run: PreparedRun, objective: Phase, outcome: PhaseOutcome, run_id: str) -> None:
    """Zero-shot scores of the kept weights on every evaluation language's dev set; only English
    decides (the objective), the others are there to look at."""
    from xit_dist.run.evaluation import evaluate_target

    results = evaluate_target(run.spec, objective, outcome, run.inputs, run.storage)
    tracker.log_metrics(run_id, {f"dev.{key}": value for key, value in results.mlflow_metrics().items()}, step=outcome.record["global_step"])
    tracker.log_datasets(run_id, results.datasets)
