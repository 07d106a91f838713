"""``xit-dist tune``: one hyperparameter search, new or resumed, on Ray Tune.

Layout under ``<output_dir>/searches/<name>/`` (paths from ``config/layout.py``): ``search.yaml``
(the resolved search spec: a resumed search must be the same search), ``optuna.journal`` (the
Optuna study, in Optuna's journal file storage: a resumed search keeps its whole history),
``tune/`` (Tune's experiment state; ``--resume`` is ``Tuner.restore`` on it), ``trials/<number>/``
(each trial's phases and Ray Train checkpoints), ``trials.csv`` and ``best.yaml`` once the search
is done.

With ``output_dir`` in a bucket, Tune's experiment state and the trials' phases are in the
bucket, and the driver keeps ``search.yaml``, the study's journal, ``trials.csv`` and ``best.yaml``
in its node's mirror, uploading each as it changes (the journal as each trial ends); a driver on
a machine without them starts from the bucket's copies. The trial functions then run on the
driver's node, which holds the journal they read (their workers go anywhere).

Resources: the trial function itself asks Tune for no CPU (it only waits on its
``TorchTrainer``; it asks for memory instead), the trainer's workers ask for what the spec
says; Tune cannot see the workers' needs, so ``max_concurrent_trials`` (default: as many trials
as the cluster's CPUs and GPUs hold) keeps the trials from starving each other's workers.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from xit_dist.errors import XitError
from xit_dist.config import layout
from xit_dist.tracking.object_files import fetch_kept_file, location_exists, publish_file, read_kept_text, shared_location, write_kept_text
from xit_dist.tracking.tags import BEST_TRIAL_TAG, OBJECTIVE_TAG, OBJECTIVE_TASK_TAG, SEARCH_KIND, STOP_REASON_TAG
from xit_dist.tune import stopping
from xit_dist.tune.best import TrialOutcome, best_document, pick_best
from xit_dist.tune.search_spec import SearchSpec, cluster_concurrency, resolve_search_tree

# A trial's driver function only waits on its TorchTrainer: it asks Ray for no CPU (the workers
# get all of them) but for the memory its Python process holds (Ray needs a non-empty request).
TRIAL_DRIVER_MEMORY = 512 * 2**20
# Tune snapshots its experiment state (trial states, the searcher's and ASHA's rungs, through
# AshaRungState) at most every 10 s by default, so a killed driver could lose 10 s of results and
# a resumed ASHA could start with empty rungs. A search's state is small: snapshot every second.
SNAPSHOT_PERIOD_ENV, SNAPSHOT_PERIOD_S = "TUNE_GLOBAL_CHECKPOINT_S", "1"


@dataclass
class SearchSummary:
    search_dir: Path
    tracking_uri: str
    parent_run_id: str
    outcomes: list[TrialOutcome]
    best: TrialOutcome | None
    finished: bool


def trial_name(trial) -> str:
    from xit_dist.tune.optuna_search import TRIAL_NUMBER

    return f"trial_{trial.config[TRIAL_NUMBER]:04d}"


def build_searcher(search: SearchSpec, search_dir: Path):
    from xit_dist.tune.optuna_search import PruningAwareOptunaSearch, study_storage

    return PruningAwareOptunaSearch(
        space={field: param.optuna_distribution() for field, param in search.space.items()},
        metric=search.objective_metric,
        mode=search.mode,
        seed=search.seed,
        study_name=search.name,
        storage=study_storage(search_dir),
        search_dir=search_dir,
    )


def build_scheduler(search: SearchSpec, template):
    from ray.tune.schedulers import ASHAScheduler

    from xit_dist.tune.optuna_search import STEP_KEY

    # stop_last_trials=False: a trial is stopped for scoring low at a rung, never for
    # reaching max_t; it ends itself and sends its final (kept weights') score.
    return ASHAScheduler(
        time_attr=STEP_KEY,
        metric=search.objective_metric,
        mode=search.mode,
        max_t=search.asha_max_t(template),
        grace_period=search.asha_grace_period(template),
        reduction_factor=search.scheduler.reduction_factor,
        brackets=search.scheduler.brackets,
        stop_last_trials=False,
    )


def check_search_state(search: SearchSpec, search_dir: Path, resume: bool) -> bool:
    """Whether the search has started; refuses to start it twice or to resume another search."""
    started = location_exists(f"{shared_location(layout.tune_dir(search_dir))}/tuner.pkl")
    if resume and not started:
        raise XitError(f"--resume: search {search.name!r} has not started ({layout.tune_dir(search_dir)} holds no Tune state); run it without --resume")
    if not resume and started:
        raise XitError(f"search {search.name!r} already exists in {search_dir}: add --resume to carry it on, or give it another name")
    if started:
        spec_file = layout.search_spec_file(search_dir)
        stored = resolve_search_tree(yaml.safe_load(read_kept_text(spec_file) or "{}"), search_dir, str(spec_file))
        if stored.fingerprint() != search.fingerprint():
            raise XitError(f"--resume: the search spec differs from the one search {search.name!r} started with ({spec_file})")
    return started


def restore_study(search_dir: Path) -> None:
    """A search in a bucket resumed on a machine without its study: the journal the last driver
    uploaded, so the study carries on its whole history."""
    study = layout.study_file(search_dir)
    if not study.exists():
        fetch_kept_file(study)


def check_objective_data(search: SearchSpec, template, inputs) -> None:
    """The objective's English dev split must load (preflight checks training and test data)."""
    from xit_dist.data.loading import load_source
    from xit_dist.tasks.languages import SOURCE_LANGUAGE
    from xit_dist.tasks.registry import get_task

    task = get_task(search.objective_phase_task)
    load_source(task.eval_source("validation", SOURCE_LANGUAGE), inputs.data_dir_for(task.name), template.data.revision)


def spec_document(search: SearchSpec, command: str) -> str:
    header = (
        f"# The resolved search spec of `{command}` (base spec inlined).\n"
        f"# `xit-dist tune <this file> --resume` carries the search on.\n"
    )
    return header + yaml.safe_dump(search.model_dump(mode="json", by_alias=True), sort_keys=False)


def run_search(search: SearchSpec, resume: bool, command: str, out: Callable[[str], None] | None = None) -> SearchSummary:
    from ray import tune

    from xit_dist.console import quiet_third_party, say
    from xit_dist.plan.preflight import preflight
    from xit_dist.run.ray_cluster import connect_cluster
    from xit_dist.run.session import check_buckets, keep_tracking_store, open_tracker, restore_tracking_store
    from xit_dist.tracking.store import resolve_tracking_uri
    from xit_dist.tune.callbacks import TrialRecorder
    from xit_dist.tune.trial import TrialContext, run_trial

    out = out or say
    os.environ.setdefault(SNAPSHOT_PERIOD_ENV, SNAPSHOT_PERIOD_S)  # a user's own setting wins
    template = search.trial_spec({})
    check_buckets([template])
    search_dir = search.search_dir()
    started = check_search_state(search, search_dir, resume)
    quiet_third_party()
    out(f"== search {search.name}: {search.num_samples} trials of {search.intermediate}, objective {search.objective_metric} ({search.mode})")
    inputs = preflight(template)
    check_objective_data(search, template, inputs)
    output_root = search.output_root()
    tracking_uri = resolve_tracking_uri(template.tracking.uri, output_root)
    restore_tracking_store(template.output_dir, tracking_uri, out)
    tracker = open_tracker(tracking_uri, template.tracking.experiment, template.output_dir)
    connect_cluster([template], output_root)

    import ray

    prepare_search_dir(search, search_dir, started, command)
    parent = open_search_parent(search, tracker, search_dir)

    context = TrialContext(search, inputs, tracking_uri, template.tracking.experiment, template.output_dir, parent)
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=context), trial_driver_resources(template.output_dir))
    if started:
        out(f"== resuming search {search.name} from {shared_location(layout.tune_dir(search_dir))}")
        tuner = tune.Tuner.restore(shared_location(layout.tune_dir(search_dir)), trainable, resume_unfinished=True, resume_errored=False)
    else:
        concurrency = search.max_concurrent_trials or cluster_concurrency(template, ray.cluster_resources())
        out(f"== up to {concurrency} trial(s) at a time, {template.distributed.num_workers} worker(s) each")
        recorder = TrialRecorder(tracking_uri, template.tracking.experiment, parent, search.name, search.intermediate, search.objective_metric)
        tuner = new_tuner(search, template, search_dir, trainable, concurrency, recorder)
    stopping.set_rule(search_dir, search.stop.no_improvement_trials, search.stop.time_budget_s)
    try:
        try:
            grid = tuner.fit()
        except BaseException as err:
            tracker.finish(parent, "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            raise
        finally:
            stopping.write_clock(search_dir)
            publish_file(layout.study_file(search_dir))
        return conclude(search, command, collect_outcomes(search, grid, search_dir), tracker, parent, out)
    finally:
        keep_tracking_store(template.output_dir, tracking_uri)


def prepare_search_dir(search: SearchSpec, search_dir: Path, started: bool, command: str) -> None:
    """The study to continue (or none: a study without Tune state is from an attempt that never
    ran a trial), and the resolved search spec written (and kept in the bucket)."""
    search_dir.mkdir(parents=True, exist_ok=True)
    if not started:
        layout.study_file(search_dir).unlink(missing_ok=True)
    else:
        restore_study(search_dir)
    write_kept_text(layout.search_spec_file(search_dir), spec_document(search, command))


def open_search_parent(search: SearchSpec, tracker, search_dir: Path) -> str:
    """The search's MLflow parent run (found again on --resume), tagged, its spec logged."""
    from xit_dist.run.runs import search_tags
    from xit_dist.tracking.store import flatten

    parent = tracker.parent_run(f"search:{search.name}", search.fingerprint())
    tracker.set_tags(parent, {
        **search_tags(search.name, search.intermediate, SEARCH_KIND),
        OBJECTIVE_TAG: search.objective_metric, OBJECTIVE_TASK_TAG: search.objective_task or search.intermediate,
    })
    tracker.log_params(parent, flatten(search.model_dump(mode="json", by_alias=True, exclude={"base"})))
    tracker.log_artifacts(parent, [layout.search_spec_file(search_dir)])
    return parent


def trial_driver_resources(output_dir: str) -> dict[str, float]:
    """What a trial's function asks of Ray: memory (see TRIAL_DRIVER_MEMORY); with output_dir in
    a bucket, a place on this (the driver's) node, where the study's journal is."""
    if not layout.in_bucket(output_dir):
        return {"memory": TRIAL_DRIVER_MEMORY}
    import ray.util

    return {"memory": TRIAL_DRIVER_MEMORY, f"node:{ray.util.get_node_ip_address()}": 0.001}


def new_tuner(search: SearchSpec, template, search_dir: Path, trainable, concurrency: int, recorder):
    """Tune's pieces, all saved with the experiment (``tuner.pkl``) for ``Tuner.restore``."""
    from ray import tune

    from xit_dist.tune.callbacks import AshaRungState, ClockKeeper, StudyKeeper

    scheduler = build_scheduler(search, template)
    callbacks = [recorder, AshaRungState(scheduler), ClockKeeper(search_dir)]
    if layout.in_bucket(template.output_dir):
        callbacks.append(StudyKeeper(layout.study_file(search_dir)))
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=build_searcher(search, search_dir),
            scheduler=scheduler,
            num_samples=search.num_samples,
            max_concurrent_trials=concurrency,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=layout.TUNE_DIR, storage_path=shared_location(search_dir), callbacks=callbacks, verbose=0
        ),
    )


def conclude(search: SearchSpec, command: str, outcomes: list[TrialOutcome], tracker, parent: str, out) -> SearchSummary:
    """The trials table; when every trial is done, the best configuration, written and logged."""
    search_dir = search.search_dir()
    done = [o for o in outcomes if o.state != "unfinished"]
    stopped = stopping.stopped_because(search_dir)
    finished = len(done) == search.num_samples or (stopped is not None and len(done) == len(outcomes))
    write_trials_table(layout.trials_table(search_dir), outcomes)
    publish_file(layout.trials_table(search_dir))
    tracker.log_artifacts(parent, [layout.trials_table(search_dir)])
    out("")
    out(trials_table(outcomes, search.objective_metric))
    if not finished:
        tracker.finish(parent, "KILLED")
        out("")
        out(f"search interrupted with {len(done)} of {search.num_samples} trials done; `{command} --resume` carries it on")
        return SearchSummary(search_dir, tracker.uri, parent, outcomes, None, False)

    if stopped is not None:
        tracker.set_tags(parent, {STOP_REASON_TAG: stopped})
        out("")
        out(f"search stopped after {len(done)} of {search.num_samples} trials: {stopped}")
    best = pick_best(outcomes, search.mode)
    if best is None:
        tracker.finish(parent, "FAILED")
        raise XitError(f"search {search.name}: no trial trained to the end ({len(outcomes)} trials: see {layout.trials_table(search_dir)})")
    best_path = layout.best_file(search_dir)
    write_kept_text(best_path, best_document(search.name, search.intermediate, search.objective_metric, search.mode, best, command))
    tracker.log_metrics(parent, {f"best.{search.objective_metric}": best.value}, step=0)
    tracker.set_tags(parent, {BEST_TRIAL_TAG: str(best.number)})
    tracker.log_artifacts(parent, [best_path])
    tracker.finish(parent)
    out("")
    out(f"best: trial {best.number}, {search.objective_metric} {best.value:.2f}; written to {shared_location(best_path)}")
    out(f"use it with `training_from: tune:{search.name}` on the {search.intermediate} stage of an experiment spec")
    out(f"MLflow: {tracker.uri} (run {parent}); `xit-dist ui` shows it")
    return SearchSummary(search_dir, tracker.uri, parent, outcomes, best, True)


# The study is the record of how each trial ended (Tune's own view of an interrupted run calls
# its cut-short trials terminated).
STUDY_STATES = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "unfinished", "WAITING": "unfinished"}


def collect_outcomes(search: SearchSpec, grid, search_dir: Path) -> list[TrialOutcome]:
    import optuna

    from xit_dist.tune.optuna_search import STEP_KEY, TRIAL_NUMBER, study_storage

    study = optuna.load_study(study_name=search.name, storage=study_storage(search_dir))
    last_results = {r.config[TRIAL_NUMBER]: r.metrics or {} for r in grid if r.config and TRIAL_NUMBER in r.config}
    outcomes = []
    for trial in study.get_trials(deepcopy=False):
        last = last_results.get(trial.number, {})
        outcomes.append(
            TrialOutcome(
                number=trial.number,
                trial_id=last.get("trial_id", ""),
                state=STUDY_STATES[trial.state.name],
                value=trial.value,
                step=last.get(STEP_KEY, trial.last_step),
                searched=trial.params,
                training=search.trial_spec(trial.params).intermediate[0].training.model_dump(mode="json"),
            )
        )
    return outcomes


def write_trials_table(path: Path, outcomes: list[TrialOutcome]) -> None:
    fields = sorted({k for o in outcomes for k in o.searched})
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "state", "objective", "step", *fields])
        for o in outcomes:
            writer.writerow([o.number, o.state, o.value, o.step, *(o.searched.get(f) for f in fields)])


def trials_table(outcomes: list[TrialOutcome], metric: str) -> str:
    from xit_dist.tune.callbacks import describe_values

    lines = [f"{'trial':>5}  {'state':<10}{metric:>14}{'step':>7}  values", "-" * 72]
    for o in outcomes:
        value = f"{o.value:.2f}" if o.value is not None else "-"
        lines.append(f"{o.number:>5}  {o.state:<10}{value:>14}{o.step if o.step is not None else '-':>7}  {describe_values(o.searched)}")
    return "\n".join(lines)
