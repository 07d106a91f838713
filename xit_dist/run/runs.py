"""The MLflow run tree of a run: a parent per spec (found again by its fingerprint), a child per
phase (found again by the phase hash) or encoder evaluation, a nested run per search trial, a
summary run per setting (its seeds' mean and std); what each holds (params, metrics, the data
sets read), and how they end (FINISHED, FAILED on an error, KILLED on Ctrl-C)."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Callable

from xit_dist.tracking.object_files import publish_tree
from xit_dist.evaluate.metrics import mean_std
from xit_dist.evaluate.results import TaskResults
from xit_dist.config.layout import phase_dir, spec_copy
from xit_dist.config.spec import ExperimentSpec
from xit_dist.plan.phases import EncoderEvaluation, Phase
from xit_dist.tracking.store import Tracker, flatten
from xit_dist.tracking.tags import (
    AXIS_TAG_PREFIX, EVALUATION_KIND, GRID_TAG, INTERMEDIATE_TAG, KIND_TAG, PHASE_ID_TAG, SEARCH_TAG, SEED_TAG, SEEDS_TAG, SETTING_TAG,
    STUDY_TAG, SUMMARY_KIND, SUMMARY_OF_TAG, TARGET_TAG, TASK_TAG, TRAINED_IN_TAG, TRIAL_TAG,
)
from xit_dist.train.phase import DONE_FILE, completed_record

if TYPE_CHECKING:
    from xit_dist.run.session import PreparedRun


def open_parent_run(tracker: Tracker, run: PreparedRun, tags: dict[str, str] | None = None) -> str:
    """The run's MLflow parent, found again by the spec's fingerprint on a rerun."""
    spec = run.spec
    parent = tracker.parent_run(spec.name, spec.fingerprint())
    tracker.log_params(parent, flatten(spec.model_dump(mode="json")))
    intermediate = ",".join(s.task for s in spec.intermediate) or "none"
    identity = {TARGET_TAG: spec.target.task, INTERMEDIATE_TAG: intermediate, SEED_TAG: str(spec.seed), SETTING_TAG: setting_key(spec)}
    tracker.set_tags(parent, {**identity, **(tags or {})})
    tracker.log_artifacts(parent, [spec_copy(run.run_dir)])
    return parent


def setting_key(spec: ExperimentSpec) -> str:
    """What runs that differ only in their seed share: the spec's fingerprint without its seed,
    name and output_dir (a grid's seed replicas, or single runs of one spec with ``--set seed=``)."""
    return spec.fingerprint(without={"seed", "name", "output_dir"})


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
    tracker.log_datasets(child, phase_datasets(run, phase))
    if phase.kind != "target":
        tracker.finish(child)


def phase_datasets(run: PreparedRun, phase: Phase) -> list[dict]:
    """What a finished phase read, from its record (none for a phase recorded before it kept them)."""
    record = completed_record(phase_dir(run.spec, phase)) or {}
    return record.get("datasets") or []


def log_results(tracker: Tracker, run: PreparedRun, parent: str, target_child: str, results: TaskResults) -> None:
    """Zero-shot results and the evaluation data on the target phase's run and the parent (which
    lists every data set of the run); both runs end here, then the setting's seed summary is
    brought up to date. A run that holds them already (a rerun, or a second driver of the same
    spec) gets none again."""
    artifacts = results.write(run.run_dir)
    publish_tree(run.run_dir)
    for run_id in (target_child, parent):
        tracker.log_new_metrics(run_id, results.mlflow_metrics())
        tracker.log_artifacts(run_id, artifacts, "results")
    tracker.log_datasets(target_child, results.datasets)
    tracker.log_datasets(parent, [*(record for phase in run.phases for record in phase_datasets(run, phase)), *results.datasets])
    tracker.finish(target_child)
    tracker.finish(parent)
    update_seed_summary(tracker, parent)


def update_seed_summary(tracker: Tracker, parent: str) -> str | None:
    """The summary run of ``parent``'s setting: per result metric of the setting's finished seed
    runs, ``<key>.mean`` and ``<key>.std`` (sample std) and ``seeds``, the number of seeds. It
    appears with the second finished seed (one seed's summary would only repeat it) and is found
    again by the setting, so each later seed updates it (idempotent: the same seeds give the
    same values, and no new points). Filtering the runs table on ``tags.xit.kind = "summary"``
    gives the paper's mean-over-seeds table in the MLflow UI."""
    tags = tracker.client.get_run(parent).data.tags
    setting = tags.get(SETTING_TAG)
    if setting is None:
        return None
    seed_runs = finished_seed_runs(tracker, setting, tags[TARGET_TAG])
    if len(seed_runs) < 2 and tracker.find_keyed(SUMMARY_OF_TAG, setting) is None:
        return None
    prefix = f"{tags[TARGET_TAG]}."
    keys = sorted({key for run in seed_runs.values() for key in run.data.metrics if key.startswith(prefix)})
    metrics: dict[str, float] = {"seeds": float(len(seed_runs))}
    for key in keys:
        values = [run.data.metrics[key] for run in seed_runs.values() if key in run.data.metrics]
        mean, std = mean_std(values)
        metrics[f"{key}.mean"] = mean
        if std is not None:
            metrics[f"{key}.std"] = std
    identity = {key: value for key, value in tags.items() if key in SUMMARY_COPIES or
                (key.startswith(AXIS_TAG_PREFIX) and key != f"{AXIS_TAG_PREFIX}seed")}
    identity.update({KIND_TAG: SUMMARY_KIND, SEEDS_TAG: ",".join(sorted(seed_runs, key=_seed_order))})
    summary = tracker.keyed_run(summary_run_name(tags), SUMMARY_OF_TAG, setting)
    tracker.set_tags(summary, identity)
    shared = next(iter(seed_runs.values())).data.params  # the setting's params: its runs differ in seed, name, output_dir only
    tracker.log_params(summary, {key: value for key, value in shared.items() if key not in ("seed", "name", "output_dir")})
    tracker.log_new_metrics(summary, metrics)
    tracker.finish(summary)
    return summary


# Tags a summary run shares with its seed runs: what filters and the report group by.
SUMMARY_COPIES = (TARGET_TAG, INTERMEDIATE_TAG, GRID_TAG, STUDY_TAG, SETTING_TAG)


def _seed_order(seed: str) -> tuple[int, str]:
    return (int(seed), "") if seed.lstrip("-").isdigit() else (0, seed)


def finished_seed_runs(tracker: Tracker, setting: str, target: str) -> dict:
    """seed -> the latest parent run of ``setting`` with that seed that holds results (results
    are logged last: a run holding them finished, even if a rerun has it RUNNING again)."""
    found: dict = {}
    runs = tracker.client.search_runs([tracker.experiment_id], filter_string=f"tags.`{SETTING_TAG}` = '{setting}'",
                                      max_results=1000, order_by=["attributes.start_time DESC"])
    for run in runs:
        if run.data.tags.get(KIND_TAG) != SUMMARY_KIND and any(key.startswith(f"{target}.") for key in run.data.metrics):
            found.setdefault(run.data.tags.get(SEED_TAG, "0"), run)
    return found


def summary_run_name(tags: dict[str, str]) -> str:
    """``summary:<intermediate>-><target>``, with the setting's other axis labels (grids)."""
    others = [f"{key[len(AXIS_TAG_PREFIX):]}={value}" for key, value in sorted(tags.items())
              if key.startswith(AXIS_TAG_PREFIX) and key[len(AXIS_TAG_PREFIX):] not in ("intermediate", "target", "seed")]
    return f"summary:{tags.get(INTERMEDIATE_TAG, 'none')}->{tags.get(TARGET_TAG, '?')}" + (f" ({', '.join(others)})" if others else "")


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
