"""What MLflow holds of a run, as a researcher compares runs with it: the experiment tagged as a
model-training one, each phase's data sets with digests of the rows actually read, a summary
run per setting with the mean and std over its finished seeds (kept up to date, never
duplicated), and MLflow's system metrics of each node of a phase. The seed grid trains on the
session's real Ray cluster with DeepSpeed; the other tests use a sqlite MLflow store alone."""

from __future__ import annotations

import statistics

import pytest

from tests.grid_fixtures import tiny_grid_tree, write_grid
from xit_dist.tracking.store import Tracker
from xit_dist.tracking.tags import (
    EXPERIMENT_KIND_TAG, KIND_TAG, MODEL_TRAINING_EXPERIMENT, PHASE_TAG, SEEDS_TAG, SETTING_TAG, SUMMARY_KIND, SUMMARY_OF_TAG,
)

SEED_TRAINING = {"epochs": 1, "max_steps": 4, "learning_rate": 2.0e-3, "batch_size": 16, "max_seq_length": 48, "log_every_n_steps": 2}


def runs_of(client, experiment_id: str, kind: str | None = None) -> list:
    runs = client.search_runs([experiment_id], max_results=1000)
    return [r for r in runs if kind is None or r.data.tags.get(KIND_TAG) == kind]


@pytest.fixture(scope="module")
def seed_grid(ray_cluster, tmp_path_factory):
    """No intermediate x XNLI x seeds 0, 1: two target phases (1 worker each, side by side),
    system metrics every second; then the grid again, which must train and add nothing."""
    from xit_dist.plan.grid import load_grid
    from xit_dist.run.scheduler import run_grid

    directory = tmp_path_factory.mktemp("seeds")
    tree = tiny_grid_tree(directory / "out", name="seeds", intermediate={"none": []}, targets=["xnli"], seeds=[0, 1], experiment="seed-tests")
    tree["training"] = SEED_TRAINING
    tree["base"]["evaluation"]["max_examples_per_language"] = 30
    tree["base"]["tracking"]["system_metrics_interval_s"] = 1
    path = write_grid(directory / "grid.yaml", tree)
    first = run_grid(load_grid(path))
    tracker = Tracker(first.tracking_uri, "seed-tests", None)
    before = {r.info.run_id: {key: len(tracker.client.get_metric_history(r.info.run_id, key)) for key in r.data.metrics}
              for r in runs_of(tracker.client, tracker.experiment_id)}
    again = run_grid(load_grid(path))
    return tracker, first, again, before


def test_summary_run_holds_mean_and_std_of_the_seed_runs_and_a_rerun_adds_none(seed_grid):
    tracker, first, again, before = seed_grid
    client = tracker.client
    assert len(first.trained) == 2 and not again.trained
    summaries = runs_of(client, tracker.experiment_id, SUMMARY_KIND)
    assert len(summaries) == 1
    summary = summaries[0]
    seed_runs = [r for r in runs_of(client, tracker.experiment_id)
                 if r.data.tags.get(SETTING_TAG) == summary.data.tags[SUMMARY_OF_TAG] and r.data.tags.get(KIND_TAG) != SUMMARY_KIND]
    assert sorted(r.data.tags["xit.seed"] for r in seed_runs) == ["0", "1"]
    assert summary.data.tags[SEEDS_TAG] == "0,1" and summary.data.metrics["seeds"] == 2
    keys = [k for k in seed_runs[0].data.metrics if k.startswith("xnli.")]
    assert {"xnli.accuracy.en", "xnli.accuracy.de", "xnli.accuracy.avg"} <= set(keys)
    for key in keys:
        values = [r.data.metrics[key] for r in seed_runs]
        assert summary.data.metrics[f"{key}.mean"] == pytest.approx(statistics.fmean(values))
        assert summary.data.metrics[f"{key}.std"] == pytest.approx(statistics.stdev(values))
    assert "seed" not in summary.data.params and summary.data.params["target.training.learning_rate"] == "0.002"
    # The rerun: the same runs, no new metric points anywhere (the summary's included).
    after = {r.info.run_id: {key: len(client.get_metric_history(r.info.run_id, key)) for key in r.data.metrics}
             for r in runs_of(client, tracker.experiment_id)}
    assert after == before and summary.info.run_id in after


def test_every_phase_run_lists_its_data_with_digests_and_the_parent_all_of_them(seed_grid):
    tracker, _, _, _ = seed_grid
    client = tracker.client
    phase_runs = [r for r in runs_of(client, tracker.experiment_id) if PHASE_TAG in r.data.tags]
    assert len(phase_runs) == 2
    for run in phase_runs:
        inputs = {(d.dataset.name, d.tags[0].value): d.dataset for d in run.inputs.dataset_inputs}
        trained = sorted(name for name, context in inputs if context == "training")
        evaluated = sorted(name for name, context in inputs if context == "evaluation")
        assert trained == ["nyu-mll/glue/mnli/train"]  # XNLI trains on MNLI
        assert evaluated == ["google/xtreme/XNLI/test[de]", "google/xtreme/XNLI/test[en]"], evaluated
        assert all(len(dataset.digest) == 16 for dataset in inputs.values())
        assert len({dataset.digest for dataset in inputs.values()}) == 3
    parents = [r for r in runs_of(client, tracker.experiment_id) if r.data.tags.get("xit.cell")]
    for parent in parents:
        names = {d.dataset.name for d in parent.inputs.dataset_inputs}
        phase = next(r for r in phase_runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id)
        assert names == {d.dataset.name for d in phase.inputs.dataset_inputs}


def test_phase_runs_record_system_metrics_of_their_node(seed_grid):
    tracker, _, _, _ = seed_grid
    phase_runs = [r for r in runs_of(tracker.client, tracker.experiment_id) if PHASE_TAG in r.data.tags]
    for run in phase_runs:
        system = {k for k in run.data.metrics if k.startswith("system/")}
        assert "system/node0/cpu_utilization_percentage" in system, sorted(run.data.metrics)
        assert "system/node0/system_memory_usage_megabytes" in system


def test_experiments_are_tagged_as_model_training(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "kind-tests", tmp_path / "artifacts")
    assert tracker.client.get_experiment(tracker.experiment_id).tags[EXPERIMENT_KIND_TAG] == MODEL_TRAINING_EXPERIMENT
    tracker.client.set_experiment_tag(tracker.experiment_id, EXPERIMENT_KIND_TAG, "genai_development")  # a user's own choice stays
    Tracker(uri, "kind-tests", None)
    assert tracker.client.get_experiment(tracker.experiment_id).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_summary_follows_seeds_as_they_finish(tmp_path):
    """Seed runs logged straight into a store: no summary of one seed; it appears with the
    second finished seed, ignores a third still training, stays as it is when a finished seed's
    run is open again (a rerun), and follows a third seed when it finishes."""
    from xit_dist.run.runs import update_seed_summary

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "summary-tests", tmp_path / "artifacts")

    def seed_run(seed: int, en: float, finished: bool = True) -> str:
        run_id = tracker.parent_run(f"cell{seed}", f"fingerprint{seed}")
        tracker.set_tags(run_id, {SETTING_TAG: "setting-a", "xit.seed": str(seed), "xit.target": "xnli", "xit.intermediate": "mnli"})
        tracker.log_metrics(run_id, {"xnli.accuracy.en": en} if finished else {"train.loss": 1.0})  # results come last
        if finished:
            tracker.finish(run_id)
        return run_id

    first = seed_run(0, 70.0)
    assert update_seed_summary(tracker, first) is None
    second = seed_run(1, 74.0)
    third = seed_run(2, 90.0, finished=False)
    summary = update_seed_summary(tracker, second)
    held = tracker.client.get_run(summary).data
    assert held.metrics["seeds"] == 2 and held.metrics["xnli.accuracy.en.mean"] == 72.0
    assert held.metrics["xnli.accuracy.en.std"] == pytest.approx(statistics.stdev([70.0, 74.0]))
    assert held.tags[KIND_TAG] == SUMMARY_KIND and held.tags[SEEDS_TAG] == "0,1"
    tracker.client.update_run(first, "RUNNING")  # a rerun has reopened seed 0's run
    assert update_seed_summary(tracker, second) == summary
    assert len(tracker.client.get_metric_history(summary, "xnli.accuracy.en.mean")) == 1  # no point per call
    tracker.log_metrics(third, {"xnli.accuracy.en": 90.0})
    tracker.finish(third)
    assert update_seed_summary(tracker, third) == summary
    held = tracker.client.get_run(summary).data
    assert held.metrics["seeds"] == 3 and held.metrics["xnli.accuracy.en.mean"] == pytest.approx(78.0)
    assert held.tags[SEEDS_TAG] == "0,1,2"
    assert len(tracker.client.get_metric_history(summary, "xnli.accuracy.en.mean")) == 2
    assert len(tracker.client.search_runs([tracker.experiment_id], f"tags.`{KIND_TAG}` = '{SUMMARY_KIND}'")) == 1


def test_a_data_option_changes_the_digest_and_logging_twice_adds_no_input(tmp_path):
    from xit_dist.builtin.assets import resolve_data_dir
    from xit_dist.data.dataset_records import TRAINING
    from xit_dist.data.stage import training_rows
    from xit_dist.data.stage_data import StageData
    from xit_dist.data.subsample import SubsampleOptions
    from xit_dist.tasks.registry import get_task

    task = get_task("mnli")
    data_dir = str(resolve_data_dir("builtin:demo"))

    def records(**stage_options) -> list[dict]:
        out: list[dict] = []
        stage = StageData(tasks=["mnli"], data_dirs={"mnli": data_dir}, **stage_options) if stage_options else None
        training_rows(task, data_dir, None, None, stage, out)
        return out

    whole, again = records(), records()
    assert whole == again and whole[0]["context"] == TRAINING and whole[0]["name"] == "nyu-mll/glue/mnli/train"
    assert whole[0]["source"].endswith("nyu-mll/glue/mnli/train.jsonl")
    smaller = records(subsample=SubsampleOptions(size=whole[0]["rows"] // 2, seed=0))
    other_seed = records(subsample=SubsampleOptions(size=whole[0]["rows"] // 2, seed=1))
    assert len({whole[0]["digest"], smaller[0]["digest"], other_seed[0]["digest"]}) == 3
    assert smaller[0]["rows"] == whole[0]["rows"] // 2

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "dataset-tests", tmp_path / "artifacts")
    run_id = tracker.parent_run("r", "f")
    tracker.log_datasets(run_id, whole + smaller)
    tracker.log_datasets(run_id, whole)
    inputs = tracker.client.get_run(run_id).inputs.dataset_inputs
    assert sorted(d.dataset.digest for d in inputs) == sorted([whole[0]["digest"], smaller[0]["digest"]])
    assert all(d.tags[0].key == "mlflow.data.context" and d.tags[0].value == "training" for d in inputs)
