"""The MLflow run tree of a run: a parent per spec (found again by its fingerprint), a child per
phase (found again by the phase hash) or encoder evaluation, a nested run per search trial;
what each holds, and how they end (FINISHED, FAILED on an error, KILLED on Ctrl-C)."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Callable

from xit_dist.evaluate.results import TaskResults
from xit_dist.config.layout import phase_dir, spec_copy
from xit_dist.plan.phases import EncoderEvaluation, Phase
from xit_dist.tracking.store import Tracker, flatten
from xit_dist.tracking.tags import (
    EVALUATION_KIND, INTERMEDIATE_TAG, KIND_TAG, PHASE_ID_TAG, SEARCH_TAG, TARGET_TAG, TASK_TAG, TRAINED_IN_TAG, TRIAL_TAG,
)
from xit_dist.train.phase import DONE_FILE

if TYPE_CHECKING:
    from xit_dist.run.session import PreparedRun


def open_parent_run(tracker: Tracker, run: PreparedRun, tags: dict[str, str] | None = None) -> str:
    """The run's MLflow parent, found again by the spec's fingerprint on a rerun."""
    spec = run.spec
    parent = tracker.parent_run(spec.name, spec.fingerprint())
    tracker.log_params(parent, flatten(spec.model_dump(mode="json")))
    intermediate = ",".join(s.task for s in spec.intermediate) or "none"
    tracker.set_tags(parent, {TARGET_TAG: spec.target.task, INTERMEDIATE_TAG: intermediate, **(tags or {})})
    tracker.log_artifacts(parent, [spec_copy(run.run_dir)])
    return parent


def open_phase_run(tracker: Tracker, run: PreparedRun, parent: str, phase: Phase) -> str:
    """The phase's child run under ``parent``, found again by the phase hash."""
    tags = {PHASE_ID_TAG: phase.id, KIND_TAG: phase.kind, TASK_TAG: phase.task}
    child = tracker.child_run(parent, f"{phase.kind}:{phase.task}", phase.hash, tags)
    params = {"phase.task": phase.task, "phase.kind": phase.kind, "phase.init": run.init_dir(phase), **flatten(phase.training.model_dump(), "training.")}
    tracker.log_params(child, params)
    return child


def open_evaluation_run(tracker: Tracker, run: PreparedRun, parent: str, evaluation: EncoderEvaluation) -> str:
    """The child run of a target evaluated straight from an encoder (no training phase)."""
    tags = {PHASE_ID_TAG: evaluation.id, KIND_TAG: EVALUATION_KIND, TASK_TAG: evaluation.task}
    child = tracker.child_run(parent, f"evaluation:{evaluation.task}", evaluation.hash, tags)
    params = {"evaluation.task": evaluation.task, "evaluation.encoder": run.init_dir(evaluation),
              "evaluation.max_seq_length": str(evaluation.training.max_seq_length)}
    tracker.log_params(child, params)
    return child


def trial_run_name(number: int) -> str:
    return f"trial-{number:03d}"


def search_tags(search: str, intermediate: str, kind: str) -> dict[str, str]:
    """The tags every run of a search carries (its parent, trials and their phases)."""
    return {SEARCH_TAG: search, INTERMEDIATE_TAG: intermediate, KIND_TAG: kind}


def open_trial_run(tracker: Tracker, search_parent: str, number: int, tags: dict[str, str], searched: Phase) -> str:
    """A search trial's run under the search's parent, found again by the trial's number; its
    params are the searched phase's training settings."""
    run_id = tracker.nested_run(search_parent, trial_run_name(number), TRIAL_TAG, str(number), tags)
    tracker.log_params(run_id, {"trial.number": str(number), **flatten(searched.training.model_dump(), "training.")})
    return run_id


def open_trial_phase_run(tracker: Tracker, trial_run: str, number: int, tags: dict[str, str], phase: Phase) -> str:
    """The searched intermediate phase of a trial whose objective is a target task: a run of its
    own nested under the trial's, so that its per-step metrics do not mix with the objective's."""
    return tracker.child_run(trial_run, f"{trial_run_name(number)}:{phase.task}", phase.hash, {**tags, KIND_TAG: "intermediate"})


def mark_trained_in(tracker: Tracker, child: str, cell: str) -> None:
    """A shared phase's child run in a cell that did not train it names the cell that did."""
    tracker.set_tags(child, {TRAINED_IN_TAG: cell})


def record_phase(tracker: Tracker, run: PreparedRun, phase: Phase, child: str) -> None:
    """The phase's record beside its child run, with the training metrics its rank 0 could not
    send (MLflow was down); an intermediate phase's run ends here, the target's when its
    evaluation is logged."""
    from xit_dist.train.metrics_sink import send_pending

    send_pending(tracker.client, child, phase_dir(run.spec, phase))
    tracker.log_artifacts(child, [phase_dir(run.spec, phase) / DONE_FILE])
    if phase.kind != "target":
        tracker.finish(child)


def log_results(tracker: Tracker, run: PreparedRun, parent: str, target_child: str, results: TaskResults) -> None:
    """Zero-shot results on the target phase's run and the parent; both runs end here. A run
    that holds them already (a rerun, or a second driver of the same spec) gets none again."""
    artifacts = results.write(run.run_dir)
    for run_id in (target_child, parent):
        tracker.log_new_metrics(run_id, results.mlflow_metrics())
        tracker.log_artifacts(run_id, artifacts, "results")
    tracker.finish(target_child)
    tracker.finish(parent)


def end_open_runs(tracker: Tracker, run_ids: list[str], status: str = "FAILED") -> None:
    """End the runs still RUNNING with ``status``. Never raises: this runs while another error
    (or Ctrl-C) is on its way to the user, and must not take its place. When the store cannot be
    written (it may sit on the disk that just filled up), one line says so."""
    from xit_dist.tracking.store import store_errors_unlogged

    def end_them() -> None:
        with store_errors_unlogged():
            for run_id in run_ids:
                if tracker.client.get_run(run_id).info.status == "RUNNING":
                    tracker.finish(run_id, status)

    try:
        try:
            end_them()
        except Exception:
            if not tracker.free_reserve():  # a full disk under a sqlite store: its reserve makes room
                raise
            end_them()
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"xit-dist: warning: could not mark the MLflow runs {status} ({type(err).__name__}: {first}); "
              "the rerun takes them over", file=sys.stderr)


@contextlib.contextmanager
def runs_end_on_error(tracker: Tracker, run_ids: Callable[[], list[str]]):
    """On an error the open runs end FAILED, on Ctrl-C KILLED; the error goes on unchanged."""
    try:
        yield
    except BaseException as err:
        end_open_runs(tracker, run_ids(), "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise
