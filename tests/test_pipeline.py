"""End to end on a real local Ray cluster with real DeepSpeed engines (CPU, gloo) and a real
MLflow store: intermediate MNLI -> target XNLI -> zero-shot evaluation."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import small_spec_tree
from xit_dist.run.scheduler import run_experiment
from xit_dist.config.load import validate_tree
from xit_dist.train.fingerprint import tensors_fingerprint

pytestmark = pytest.mark.ray


def encoder_fingerprint_of(directory: Path, prefix: str = "") -> str:
    """Fingerprint of the encoder weights stored in a transformers directory."""
    state = load_file(str(directory / "model.safetensors"))
    names = [n for n in state if n.startswith(prefix) and ".pooler." not in f".{n}" and not n.startswith(("lm_head", "classifier"))]
    return tensors_fingerprint((n[len(prefix):], state[n]) for n in names)


@pytest.fixture(scope="module")
def zero2_run(ray_cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("zero2")
    tree = small_spec_tree(out, deepspeed="zero2", name="zero2")
    tree["target"]["training"].update(eval_every_n_steps=30, eval_examples=100)  # English-dev model selection
    spec = validate_tree(tree)
    return spec, run_experiment(spec)


def test_loss_goes_down_in_every_phase(zero2_run):
    _, summary = zero2_run
    for outcome in summary.phases:
        losses = [loss for _, loss in outcome.record["losses"]]
        assert len(losses) >= 5
        assert outcome.record["zero_stage"] == 2 and outcome.record["world_size"] == 2
        assert sum(losses[-2:]) / 2 < losses[0] - 0.05, losses


def test_target_phase_starts_from_the_intermediate_encoder(zero2_run):
    _, summary = zero2_run
    intermediate, target = summary.phases
    saved_encoder = encoder_fingerprint_of(intermediate.output_dir)
    assert target.record["init_dir"] == str(intermediate.output_dir)
    assert target.record["init_encoder_fingerprint"] == saved_encoder
    # ...and not from the pretrained model, which the intermediate phase changed
    pretrained = Path(intermediate.record["init_dir"])
    assert encoder_fingerprint_of(pretrained, prefix="roberta.") != saved_encoder
    assert intermediate.record["init_encoder_fingerprint"] == encoder_fingerprint_of(pretrained, prefix="roberta.")


def test_english_beats_chance_and_metrics_are_complete(zero2_run):
    _, summary = zero2_run
    metrics = summary.results.mlflow_metrics()
    assert set(metrics) == {"xnli.accuracy.en", "xnli.accuracy.de", "xnli.accuracy.zh", "xnli.accuracy.avg", "xnli.transfer_gap"}
    assert metrics["xnli.accuracy.en"] > 40.0  # 3 balanced classes: chance is 33.3
    assert metrics["xnli.transfer_gap"] == pytest.approx(
        metrics["xnli.accuracy.en"] - (metrics["xnli.accuracy.de"] + metrics["xnli.accuracy.zh"]) / 2
    )
    assert summary.results.counts == {"en": 200, "de": 200, "zh": 200}


def test_mlflow_holds_parent_child_runs_metrics_and_artifacts(zero2_run):
    from mlflow.tracking import MlflowClient

    spec, summary = zero2_run
    client = MlflowClient(summary.tracking_uri)
    parent = client.get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["target.training.learning_rate"] == "0.002"
    assert parent.data.params["distributed.deepspeed_config"] == "zero2"
    experiment = parent.info.experiment_id
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{summary.parent_run_id}'")
    assert sorted(c.info.run_name for c in children) == ["intermediate:mnli", "target:xnli"]
    target = next(c for c in children if c.info.run_name == "target:xnli")
    for run in (parent, target):
        for lang in ("en", "de", "zh"):
            assert run.data.metrics[f"xnli.accuracy.{lang}"] == summary.results.per_language[lang]["accuracy"]
        assert "xnli.transfer_gap" in run.data.metrics
    for child in children:
        history = client.get_metric_history(child.info.run_id, "train.loss")
        assert [m.step for m in history] == list(range(10, 91, 10))
    parent_artifacts = {a.path for a in client.list_artifacts(summary.parent_run_id)}
    assert "spec.yaml" in parent_artifacts
    results = {a.path for a in client.list_artifacts(summary.parent_run_id, "results")}
    assert results == {"results/xnli_results.json", "results/xnli_results.csv", "results/xnli_accuracy_by_language.png"}
    assert (summary.run_dir / "spec.yaml").is_file()


def test_english_dev_selection_keeps_the_best_weights(zero2_run):
    from xit_dist.train.consolidate import full_state_dict

    spec, summary = zero2_run
    target = summary.phases[-1]
    validation = target.record["validation"]
    assert [step for step, _ in validation] == [30, 60, 90]
    best_step, best_score = max(validation, key=lambda item: (item[1], -item[0]))
    assert (target.record["best_step"], target.record["best_score"]) == (best_step, best_score)
    # The saved model is exactly the best checkpoint's weights, not the last step's.
    best = full_state_dict(target.output_dir.parent / "best")
    names = [n for n in best if n.startswith("roberta.")]
    assert tensors_fingerprint((n[len("roberta."):], best[n]) for n in names) == encoder_fingerprint_of(target.output_dir, "roberta.")
    from mlflow.tracking import MlflowClient

    history = MlflowClient(summary.tracking_uri).get_metric_history(summary.phase_run_ids[target.record["phase_id"]], "dev.accuracy")
    assert [(m.step, m.value) for m in history] == [tuple(v) for v in validation]


def test_rerun_reuses_phases_and_runs(zero2_run):
    from mlflow.tracking import MlflowClient

    spec, first = zero2_run
    second = run_experiment(spec)
    assert all(outcome.reused for outcome in second.phases)
    assert second.results.per_language == first.results.per_language
    assert second.parent_run_id == first.parent_run_id
    client = MlflowClient(first.tracking_uri)
    experiment = client.get_run(first.parent_run_id).info.experiment_id
    assert len(client.search_runs([experiment])) == 3


@pytest.fixture(scope="module")
def zero3_run(ray_cluster, tmp_path_factory):
    """One one-phase ZeRO-3 run: the uninterrupted run the kill tests below must reproduce."""
    tree = small_spec_tree(tmp_path_factory.mktemp("zero3"), intermediate=(), deepspeed="zero3", name="zero3")
    # 65 rows over 2 ranks in batches of 32: rank 0 runs 2 batches, rank 1 only 1. Under
    # ZeRO-3 every forward is a collective, so this hangs unless batch counts are evened out.
    tree["evaluation"].update(batch_size=32, max_examples_per_language=65)
    return run_experiment(validate_tree(tree))


def test_zero3_consolidated_weights_equal_engine_parameters(zero3_run):
    (outcome,) = zero3_run.phases
    record = outcome.record
    assert record["zero_stage"] == 3
    saved = encoder_fingerprint_of(outcome.output_dir, prefix="roberta.")
    assert saved == record["final_engine_fingerprint"]  # computed by the workers from gathered ZeRO-3 partitions
    assert saved != record["init_encoder_fingerprint"]
    losses = [loss for _, loss in record["losses"]]
    assert sum(losses[-2:]) / 2 < losses[0] - 0.05, losses


def test_zero3_evaluation_with_unequal_shards_scores_every_row(zero3_run):
    assert zero3_run.results.counts == {"en": 65, "de": 65, "zh": 65}
    assert json.loads((zero3_run.run_dir / "xnli_results.json").read_text())["per_language"] == zero3_run.results.per_language


def _cmdline(process) -> str:
    import psutil

    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # it exited while we looked
        return ""


def logged_loss_steps(store: Path) -> list[int]:
    """The steps of ``train.loss`` in a sqlite MLflow store, in order (every run of the store)."""
    import sqlite3

    if not store.is_file():
        return []
    with contextlib.closing(sqlite3.connect(store, timeout=30)) as db:
        try:
            return [row[0] for row in db.execute("select step from metrics where key = 'train.loss' order by step")]
        except sqlite3.OperationalError:  # the schema is not there yet
            return []


def kill_a_worker_after_checkpoint(storage: Path, phase_prefix: str, step: int, stop: threading.Event, logged_step: int = 0) -> None:
    """Watch Ray's record of the phase's checkpoints; once the one at ``step`` is registered
    (and MLflow holds the loss of ``logged_step``), SIGKILL one training worker process."""
    import psutil

    marker = f"step-{step:08d}"
    while not stop.is_set():
        for snapshot in storage.glob(f"{phase_prefix}*/checkpoint_manager_snapshot.json"):
            if marker in snapshot.read_text() and logged_step in [0, *logged_loss_steps(storage.parent / "mlflow.db")]:
                # Only this session's Ray (started in-process, so its workers descend from us): other
                # Ray instances on the machine may run training workers too.
                workers = [p for p in psutil.Process().children(recursive=True) if "RayTrainWorker" in _cmdline(p)]
                if workers:
                    os.kill(workers[0].pid, signal.SIGKILL)
                    return
        time.sleep(0.05)


def zero3_spec_killed_after_step_20(tmp_path: Path, max_failures: int):
    """The zero3_run spec (checkpoint frequency is not part of a phase's identity), with a
    thread that kills a training worker once the step-15 checkpoint is registered and the loss
    of step 20 is in MLflow: the resumed run trains steps 16-20 again, and the loss window of
    step 20 (steps 11-20, logged every 10) straddles the checkpoint."""
    tree = small_spec_tree(tmp_path, intermediate=(), deepspeed="zero3", name="zero3")
    tree["evaluation"].update(batch_size=32, max_examples_per_language=65)
    tree["target"]["training"]["checkpoint_every_n_steps"] = 15
    tree["distributed"]["max_failures"] = max_failures
    stop = threading.Event()
    threading.Thread(target=kill_a_worker_after_checkpoint, args=(tmp_path / "ray", "xnli-", 15, stop, 20), daemon=True).start()
    return validate_tree(tree), stop


def assert_same_as_uninterrupted(summary, uninterrupted) -> None:
    """The same spec and seed in another output directory, trained from step 0 to the kill and
    resumed after it: every logged loss, the final weights and every metric equal the
    uninterrupted run's (so this is also the suite's same-spec-same-seed determinism check)."""
    from mlflow.tracking import MlflowClient

    record = summary.phases[0].record
    assert record["resumed_from_steps"] and record["resumed_from_steps"][0] >= 10  # not from step 0
    assert record["losses"] == uninterrupted.phases[0].record["losses"]
    # MLflow holds each logged step exactly once, with the uninterrupted run's loss
    history = MlflowClient(summary.tracking_uri).get_metric_history(summary.phase_run_ids[record["phase_id"]], "train.loss")
    assert sorted((m.step, m.value) for m in history) == [tuple(loss) for loss in record["losses"]]
    assert record["final_engine_fingerprint"] == uninterrupted.phases[0].record["final_engine_fingerprint"]
    assert summary.results.per_language == uninterrupted.results.per_language


def test_killed_phase_resumes_when_the_command_is_rerun(zero3_run, tmp_path):
    """No retries allowed: the run fails; rerunning the same command resumes from the last
    checkpoint and ends exactly where an uninterrupted run does."""
    spec, stop = zero3_spec_killed_after_step_20(tmp_path, max_failures=0)
    with pytest.raises(Exception):
        run_experiment(spec)
    stop.set()
    assert_same_as_uninterrupted(run_experiment(spec), zero3_run)


def test_killed_worker_is_replaced_and_the_phase_finishes(zero3_run, tmp_path):
    """With failures tolerated (the default), Ray restarts the worker group, which resumes from
    the last DeepSpeed checkpoint within the same run."""
    spec, stop = zero3_spec_killed_after_step_20(tmp_path, max_failures=1)
    summary = run_experiment(spec)
    stop.set()
    assert_same_as_uninterrupted(summary, zero3_run)


def test_phase_records_count_each_training_splits_dropped_rows(zero2_run):
    """Both phases train on MNLI (XNLI's English training data); the demo MNLI drops no row."""
    _, summary = zero2_run
    for outcome in summary.phases:
        (entry,) = outcome.record["dropped_rows"].values()
        assert list(outcome.record["dropped_rows"]) == ["nyu-mll/glue[mnli] split train"]
        assert entry["dropped"] == 0 and entry["rows"] > 0 and entry["first_rows"] == []
