"""Hyperparameter search: the search spec's checks, how Optuna hears about trials, a real search
on Ray Tune (tiny model, CPU, DeepSpeed workers, ASHA stopping trials) interrupted by killing its
driver and resumed with ``--resume``, and specs taking the best configuration it found."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import small_spec_tree
from xit_dist.errors import SpecError
from xit_dist.config.load import validate_tree
from xit_dist.config.layout import BEST_FILE
from xit_dist.config.training_from import read_best
from xit_dist.tune.best import TrialOutcome, best_document
from xit_dist.tune.optuna_search import FINISHED_KEY, STEP_KEY, TRIAL_NUMBER, VALUES, PruningAwareOptunaSearch, study_storage
from xit_dist.tune.search_spec import load_search_spec, resolve_search_tree

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------ the search spec


def search_tree(output_dir: Path, name: str = "tiny", address: str | None = None) -> dict:
    base = small_spec_tree(output_dir, name="tune-base")
    base["distributed"].update(num_workers=1, address=address)
    return {
        "name": name,
        "base": base,
        "intermediate": "mnli",
        "training": {"max_steps": 60, "eval_every_n_steps": 20, "eval_examples": 100, "warmup_ratio": 0.0, "log_every_n_steps": 10},
        "space": {"learning_rate": {"loguniform": [1.0e-4, 1.0e-2]}, "weight_decay": {"uniform": [0.0, 0.1]}},
        "num_samples": 5,
        "seed": 3,
        "scheduler": {"grace_period": 20, "reduction_factor": 2},
    }


def test_shipped_search_specs_validate():
    specs = sorted((REPO / "ray_configs" / "tune").glob("*.yaml"))
    assert specs
    for path in specs:
        assert path.read_text().startswith("# xit-dist tune ")
        load_search_spec(path)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"space": {"learning_rte": {"uniform": [0, 1]}}}, "space: 'learning_rte' is not a training field"),
        ({"space": {"eval_examples": {"int": [10, 20]}}}, "'eval_examples' decides how trials are measured"),
        ({"space": {"learning_rate": {"uniform": [1e-3, 1e-4]}}}, "lower bound 0.001 must be below upper bound 0.0001"),
        ({"space": {"learning_rate": {"uniform": [1e-4, 1e-3], "choice": [1]}}}, "give exactly one of loguniform, uniform, int, choice"),
        (
            {"space": {"batch_size": {"choice": [32, 7]}}, "resources": {"num_workers": 2}},
            "space.batch_size: the value 7 makes an invalid trial: intermediate.0.training.batch_size: 7 is not a multiple",
        ),
        ({"space": {"warmup_ratio": {"uniform": [0.0, 1.5]}}}, "space.warmup_ratio: the value 1.5 makes an invalid trial"),
        ({"training": {"eval_every_n_steps": None}}, "training.eval_every_n_steps: required by a search"),
        ({"metric": "dev.f1"}, "metric: trials report dev.accuracy (English dev of mnli), not dev.f1"),
        ({"intermediate": "mnlii"}, "intermediate: unknown task 'mnlii'"),
        ({"training": {"lr": 1}}, "training: unknown training field(s) ['lr']"),
        ({"objective_task": "xnli"}, "objective_training.eval_every_n_steps: required by a search"),
        ({"num_samples": 0}, "num_samples: Input should be greater than or equal to 1"),
        ({"stop": {"time_budget_s": 0}}, "stop.time_budget_s: Input should be greater than 0"),
        ({"stop": {"no_improvement_trials": 0}}, "stop.no_improvement_trials: Input should be greater than or equal to 1"),
        ({"space": {}}, "space: Dictionary should have at least 1 item"),
    ],
)
def test_search_spec_mistakes_are_one_line(tmp_path, change, expected):
    tree = search_tree(tmp_path)
    for key, value in change.items():
        if isinstance(value, dict) and key == "training":
            tree[key] = {**tree[key], **value}
        else:
            tree[key] = value
    with pytest.raises(SpecError) as caught:
        resolve_search_tree(tree, tmp_path, "s.yaml")
    message = str(caught.value)
    assert "\n" not in message and message.startswith("s.yaml: ")
    assert expected in message, message


def test_trial_spec_layers_sampled_values_over_fixed_ones(tmp_path):
    tree = search_tree(tmp_path)
    tree["objective_task"] = "xnli"
    tree["objective_training"] = {"eval_every_n_steps": 30}
    search = resolve_search_tree(tree, tmp_path)
    spec = search.trial_spec({"learning_rate": 5e-4}, tmp_path / "trial")
    stage = spec.intermediate[0].training
    assert [s.task for s in spec.intermediate] == ["mnli"] and spec.target.task == "xnli"
    assert stage.learning_rate == 5e-4 and stage.max_steps == 60 and stage.max_seq_length == 64  # sampled, fixed, base
    assert spec.target.training.eval_every_n_steps == 30 and spec.target.training.learning_rate == 2e-3
    assert spec.evaluation.split == "validation"  # a search never looks at test sets
    assert spec.output_dir == str(tmp_path / "trial")
    assert search.objective_metric == "dev.accuracy"


# ------------------------------------------------------------------------------ Optuna


def searcher(storage_file: Path, study_name: str = "s") -> PruningAwareOptunaSearch:
    from optuna.distributions import FloatDistribution

    return PruningAwareOptunaSearch(
        space={"learning_rate": FloatDistribution(1e-4, 1e-2, log=True)},
        metric="dev.accuracy",
        mode="max",
        seed=0,
        study_name=study_name,
        storage=study_storage(storage_file.parent),
        search_dir=storage_file.parent,
    )


def finish(search: PruningAwareOptunaSearch, trial_id: str, value: float) -> None:
    search.on_trial_complete(trial_id, {"dev.accuracy": value, STEP_KEY: 60, FINISHED_KEY: 1, "done": True})


# ------------------------------------------------------------------------------ stopping a search


@pytest.mark.parametrize(("values", "rule", "expected"), [
    ([50.0, 49.0, 50.0], 2, "no improvement in 2 completed trial(s) after the best, trial 0 (50)"),  # a tie is no gain
    ([50.0, 51.0, 49.0], 2, None),
    ([50.0, 49.0], 1, "no improvement in 1 completed trial(s) after the best, trial 0 (50)"),
])
def test_no_improvement_rule_counts_completed_trials_after_the_best(values, rule, expected):
    from xit_dist.tune.stopping import Completed, stop_reason

    completed = [Completed(number, value) for number, value in enumerate(values)]
    assert stop_reason(completed, "max", rule, None, 0.0) == expected
    flipped = [Completed(c.number, -c.value) for c in completed]  # the same trials, minimised
    assert stop_reason(flipped, "min", rule, None, 0.0) == (expected and expected.replace("(50)", "(-50)"))


def test_a_search_stops_starting_trials_then_stays_stopped(tmp_path, capsys):
    from xit_dist.tune import stopping

    stopping.set_rule(tmp_path, 2, None)
    search = searcher(tmp_path / "optuna.journal")
    for trial_id, value in zip("abc", [50.0, 49.0, 50.0]):
        assert search.suggest(trial_id) not in (None, search.FINISHED)
        finish(search, trial_id, value)
    assert search.suggest("d") == search.FINISHED
    assert stopping.stopped_because(tmp_path) == "no improvement in 2 completed trial(s) after the best, trial 0 (50)"
    assert capsys.readouterr().out.count("search stops starting trials: no improvement in 2") == 1
    assert searcher(tmp_path / "optuna.journal").suggest("e") == search.FINISHED  # a resumed driver: still stopped
    assert len(search._ot_study.get_trials()) == 3


def test_a_search_stops_starting_trials_once_its_time_budget_is_spent(tmp_path, monkeypatch):
    import time as clock

    from xit_dist.tune import stopping

    (tmp_path / "clock.json").write_text('{"spent_s": 95.0}')  # earlier runs of the search
    monkeypatch.setattr(stopping, "_SESSIONS", {})
    stopping.set_rule(tmp_path, None, 100.0)
    search = searcher(tmp_path / "optuna.journal")
    assert search.suggest("a") not in (None, search.FINISHED)
    before, started = stopping._SESSIONS[str(tmp_path)]
    assert before == 95.0
    stopping._SESSIONS[str(tmp_path)] = (before, started - 6.0)  # this run has gone on for 6 s
    assert search.suggest("b") == search.FINISHED
    assert stopping.stopped_because(tmp_path).startswith("time budget spent: 1m 41s of 1m 40s")
    stopping.write_clock(tmp_path)
    assert 101.0 <= stopping.recorded_seconds(tmp_path) < 110.0
    assert clock.monotonic() >= started


def test_status_says_where_a_search_stands_and_starts_nothing(tmp_path, capsys):
    from xit_dist.cli import main
    from xit_dist.tune import stopping

    tree = search_tree(tmp_path / "out", name="status-test")
    tree["stop"] = {"no_improvement_trials": 3, "time_budget_s": 3600}
    spec_file = tmp_path / "search.yaml"
    spec_file.write_text(f"# xit-dist tune {spec_file}\n" + yaml.safe_dump(tree))
    assert main(["tune", str(spec_file), "--status"]) == 0
    search_dir = tmp_path / "out" / "searches" / "status-test"
    assert capsys.readouterr().out.strip() == f"search status-test ({search_dir}): not started"

    search_dir.mkdir(parents=True)
    search = searcher(search_dir / "optuna.journal", study_name="status-test")
    for trial_id in "abcd":
        search.suggest(trial_id)
    finish(search, "a", 61.5)
    search.on_trial_complete("b", {"dev.accuracy": 35.0, STEP_KEY: 40, "done": True})  # stopped by ASHA
    search.on_trial_complete("c", None, error=True)
    (search_dir / "clock.json").write_text('{"spent_s": 754.0}')
    assert main(["tune", str(spec_file), "--status"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    learning_rate = search._ot_study.trials[0].params["learning_rate"]
    assert lines == [
        f"search status-test ({search_dir}): 4 of 5 trials: 1 completed, 1 pruned, 1 running, 1 failed",
        f"best: trial 0, dev.accuracy 61.5 (learning_rate={learning_rate:.3g})",
        "time spent: 12m 34s of a 1h 00m 00s budget",
        "state: running, or interrupted with 1 trial(s) unfinished: `--resume` carries it on",
    ]
    stopping.record_stop(search_dir, "no improvement in 3 completed trial(s) after the best, trial 0 (61.5)")
    search.on_trial_complete("d", {"dev.accuracy": 30.0, STEP_KEY: 40, "done": True})
    assert main(["tune", str(spec_file), "--status"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "state: stopped: no improvement in 3 completed trial(s) after the best, trial 0 (61.5)"
    assert main(["tune", str(spec_file), "--status", "--resume"]) == 2


def test_optuna_hears_stopped_trials_as_pruned_and_finished_ones_as_complete(tmp_path):
    from optuna.trial import TrialState

    search = searcher(tmp_path / "optuna.journal")
    configs = {tid: search.suggest(tid) for tid in ("a", "b", "c")}
    assert [c[TRIAL_NUMBER] for c in configs.values()] == [0, 1, 2]
    assert set(configs["a"][VALUES]) == {"learning_rate"}
    for tid in ("a", "b"):
        search.on_trial_result(tid, {"dev.accuracy": 40.0, STEP_KEY: 20, "training_iteration": 1})
    # a: stopped by ASHA at step 40 (no finished marker); b: ran to the end; c: raised
    search.on_trial_complete("a", {"dev.accuracy": 35.0, STEP_KEY: 40, "done": True})
    search.on_trial_complete("b", {"dev.accuracy": 61.0, STEP_KEY: 60, FINISHED_KEY: 1, "done": True})
    search.on_trial_complete("c", None, error=True)
    trials = {t.number: t for t in search._ot_study.get_trials()}
    assert trials[0].state == TrialState.PRUNED and trials[0].intermediate_values == {20: 40.0, 40: 35.0}
    assert trials[1].state == TrialState.COMPLETE and trials[1].value == 61.0
    assert trials[2].state == TrialState.FAIL
    assert search._ot_study.best_trial.number == 1


def test_a_trial_tune_never_saw_is_adopted_after_a_resume(tmp_path):
    """The driver died after Optuna created trial 1 but before Tune saved it."""
    from optuna.trial import TrialState

    first = searcher(tmp_path / "optuna.journal")
    first.suggest("a")
    lost = first.suggest("b")
    first.on_trial_complete("a", {"dev.accuracy": 50.0, STEP_KEY: 60, FINISHED_KEY: 1})
    resumed = searcher(tmp_path / "optuna.journal")  # same study file, nothing known of "b"
    resumed._ot_trials["a"] = first._ot_trials["a"]
    adopted = resumed.suggest("b2")
    assert adopted == lost  # same number, same values
    fresh = resumed.suggest("c")
    assert fresh[TRIAL_NUMBER] == 2
    # the resumed sampler draws new values, not the ones it drew after its seed last time
    tried = [t.params["learning_rate"] for t in resumed._ot_study.get_trials()]
    assert len(set(tried)) == 3
    states = [t.state for t in resumed._ot_study.get_trials()]
    assert states == [TrialState.COMPLETE, TrialState.RUNNING, TrialState.RUNNING]


def test_a_finished_trial_tune_restarts_keeps_the_studys_decision(tmp_path):
    """Tune saved its state before the study heard that trial 0 was pruned; after the resume
    Tune runs it again under its old id, which the restored searcher may not know either."""
    from optuna.trial import TrialState

    first = searcher(tmp_path / "optuna.journal")
    first.suggest("a")
    first.on_trial_complete("a", {"dev.accuracy": 30.0, STEP_KEY: 20})
    restored = searcher(tmp_path / "optuna.journal")
    replay = {"dev.accuracy": 55.0, STEP_KEY: 40, "config": {TRIAL_NUMBER: 0, VALUES: {}}}
    restored.on_trial_result("a", replay)
    restored.on_trial_complete("a", {**replay, FINISHED_KEY: 1})
    (trial,) = restored._ot_study.get_trials()
    assert trial.state == TrialState.PRUNED and trial.value == 30.0 and trial.intermediate_values == {20: 30.0}


# ------------------------------------------------------------------------------ best configuration


def outcome(number: int, state: str, value: float | None, learning_rate: float) -> TrialOutcome:
    training = validate_tree(small_spec_tree("/tmp/unused")).intermediate[0].training.model_dump(mode="json")
    return TrialOutcome(number, f"t{number}", state, value, 60, {"learning_rate": learning_rate}, {**training, "learning_rate": learning_rate})


def write_best(output_dir: Path, name: str, best: TrialOutcome) -> Path:
    path = output_dir / "searches" / name / BEST_FILE
    path.parent.mkdir(parents=True)
    path.write_text(best_document(name, "mnli", "dev.accuracy", "max", best, f"xit-dist tune {name}.yaml"))
    return path


def test_training_from_takes_the_best_values_and_the_plan_shows_them(tmp_path, capsys):
    from xit_dist.cli import main

    write_best(tmp_path, "s", outcome(3, "completed", 61.0, 7e-4))
    tree = small_spec_tree(tmp_path)
    tree["intermediate"][0] = {"task": "mnli", "training_from": "tune:s", "training": {"log_every_n_steps": 5}}
    spec = validate_tree(tree)
    training = spec.intermediate[0].training
    assert training.learning_rate == 7e-4 and training.max_steps == 90 and training.log_every_n_steps == 5
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(tree))
    assert main(["plan", str(spec_file)]) == 0
    printed = capsys.readouterr().out
    assert f"training from tune:s ({tmp_path / 'searches' / 's' / BEST_FILE}): trial 3, dev.accuracy 61.0" in printed
    assert "searched values taken: learning_rate=0.0007" in printed
    assert "set here instead: log_every_n_steps=5 (search: 10)" in printed


def test_training_from_mistakes_are_one_line(tmp_path):
    tree = small_spec_tree(tmp_path)
    tree["intermediate"][0]["training_from"] = "tune:missing"
    with pytest.raises(SpecError, match=r"intermediate\.0\.training_from: tune:missing: no best configuration at .*missing/best.yaml"):
        validate_tree(tree)
    write_best(tmp_path, "other", outcome(0, "completed", 50.0, 1e-3))
    tree = small_spec_tree(tmp_path, intermediate=("pawsx",), target="xnli")
    tree["intermediate"][0]["training_from"] = "tune:other"
    with pytest.raises(SpecError, match="was searched for task mnli, this stage trains pawsx"):
        validate_tree(tree)


# ------------------------------------------------------------------------------ a real search

SEARCH_NAME = "tiny"
NUM_TRIALS = 4
FINISHED_BEFORE_KILL = 2
SEARCH_TIMEOUT_S = 1500


def study_trials(search_dir: Path) -> list:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(search_dir / "optuna.journal")))
    return optuna.load_study(study_name=SEARCH_NAME, storage=storage).get_trials(deepcopy=False)


def tune_command(spec_file: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "xit_dist.cli", "tune", str(spec_file), *extra]


@pytest.fixture(scope="module")
def interrupted_search(ray_cluster, tmp_path_factory):
    """``xit-dist tune`` killed (SIGKILL, no clean-up) once two trials are done and another is
    running, then ``xit-dist tune --resume``; both drivers join the session's Ray cluster."""
    from optuna.trial import TrialState

    root = tmp_path_factory.mktemp("search")
    tree = search_tree(root / "out", SEARCH_NAME, address=ray_cluster.get_runtime_context().gcs_address)
    tree["num_samples"] = NUM_TRIALS
    spec_file = root / "search.yaml"
    spec_file.write_text(f"# xit-dist tune {spec_file}\n" + yaml.safe_dump(tree))
    search_dir = root / "out" / "searches" / SEARCH_NAME
    started = time.monotonic()
    with open(root / "first.log", "w") as log:
        first = subprocess.Popen(tune_command(spec_file), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)
        states: dict[int, TrialState] = {}
        while time.monotonic() - started < SEARCH_TIMEOUT_S:
            assert first.poll() is None, "the search ended before it could be interrupted:\n" + (root / "first.log").read_text()[-3000:]
            if (search_dir / "optuna.journal").is_file():
                states = {t.number: t.state for t in study_trials(search_dir)}
                done = [n for n, s in states.items() if s in (TrialState.COMPLETE, TrialState.PRUNED)]
                if len(done) >= FINISHED_BEFORE_KILL and TrialState.RUNNING in states.values():
                    break
            time.sleep(1)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    killed_after = time.monotonic() - started
    resumed = subprocess.run(tune_command(spec_file, "--resume"), capture_output=True, text=True, timeout=SEARCH_TIMEOUT_S, cwd=REPO)
    (root / "resume.log").write_text(resumed.stdout + resumed.stderr)
    assert resumed.returncode == 0, resumed.stdout[-5000:] + resumed.stderr[-5000:]
    return {
        "search_dir": search_dir,
        "states_at_kill": states,
        "resume_output": resumed.stdout,
        "tracking_uri": f"sqlite:///{root / 'out' / 'mlflow.db'}",
        "timing": (killed_after, time.monotonic() - started),
    }


def tune_trials(search_dir: Path) -> list:
    from ray.tune import ExperimentAnalysis

    return ExperimentAnalysis(str(search_dir / "tune")).trials


def trial_runs(search: dict):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(search["tracking_uri"])
    experiment = client.get_experiment_by_name("tests")
    parent = client.search_runs([experiment.experiment_id], f"tags.`xit.search` = '{SEARCH_NAME}' and tags.`xit.kind` = 'search'")
    assert len(parent) == 1
    children = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent[0].info.run_id}'")
    return client, parent[0], children


@pytest.mark.ray
def test_resumed_search_lost_and_duplicated_no_trial(interrupted_search):
    from optuna.trial import TrialState

    search_dir, at_kill = interrupted_search["search_dir"], interrupted_search["states_at_kill"]
    print("interrupted after %.0f s, done after %.0f s" % interrupted_search["timing"])
    assert TrialState.RUNNING in at_kill.values()  # the kill really cut a trial short
    trials = tune_trials(search_dir)
    numbers = sorted(t.config[TRIAL_NUMBER] for t in trials)
    assert numbers == list(range(NUM_TRIALS))
    assert len({t.trial_id for t in trials}) == NUM_TRIALS
    assert {t.status for t in trials} == {"TERMINATED"}
    study = study_trials(search_dir)
    assert sorted(t.number for t in study) == list(range(NUM_TRIALS))
    assert {t.state for t in study} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert len({tuple(sorted(t.params.items())) for t in study}) == NUM_TRIALS  # no configuration tried twice
    assert all(t.config[VALUES] == pytest.approx(study[t.config[TRIAL_NUMBER]].params) for t in trials)
    for number, state in at_kill.items():  # what was decided before the kill still stands
        if state != TrialState.RUNNING:
            assert study[number].state == state
    _, _, children = trial_runs(interrupted_search)
    assert sorted(int(r.data.tags["xit.trial_number"]) for r in children) == list(range(NUM_TRIALS))
    assert "ASHA resumes with" in interrupted_search["resume_output"]
    assert "ASHA resumes with 0 recorded" not in interrupted_search["resume_output"]


@pytest.mark.ray
def test_asha_stopped_trials_are_pruned_in_optuna_and_killed_in_mlflow(interrupted_search):
    from optuna.trial import TrialState

    search_dir = interrupted_search["search_dir"]
    by_number = {t.config[TRIAL_NUMBER]: t for t in tune_trials(search_dir)}
    study = {t.number: t for t in study_trials(search_dir)}
    _, _, children = trial_runs(interrupted_search)
    runs = {int(r.data.tags["xit.trial_number"]): r for r in children}
    pruned = [n for n, t in study.items() if t.state == TrialState.PRUNED]
    completed = [n for n, t in study.items() if t.state == TrialState.COMPLETE]
    assert pruned and completed, {n: t.state for n, t in study.items()}
    for number in pruned:
        last = by_number[number].last_result
        assert FINISHED_KEY not in last and last[STEP_KEY] < 60  # stopped before the end
        assert study[number].value == last["dev.accuracy"] == study[number].intermediate_values[last[STEP_KEY]]
        assert runs[number].info.status == "KILLED" and runs[number].data.tags["xit.trial_state"] == "pruned"
    for number in completed:
        last = by_number[number].last_result
        record = yaml.safe_load((search_dir / "trials" / f"{number:04d}" / "phases").glob("*/phase.json").__next__().read_text())
        assert last[FINISHED_KEY] == 1 and last[STEP_KEY] == 60
        assert study[number].value == last["dev.accuracy"] == record["best_score"] == max(s for _, s in record["validation"])
        assert runs[number].info.status == "FINISHED" and runs[number].data.tags["xit.trial_state"] == "completed"
        assert runs[number].data.metrics["objective.dev.accuracy"] == study[number].value
        assert [d.dataset.name for d in runs[number].inputs.dataset_inputs] == ["nyu-mll/glue/mnli/train"]  # what it trained on


@pytest.mark.ray
def test_mlflow_holds_the_search_and_each_trial(interrupted_search):
    client, parent, children = trial_runs(interrupted_search)
    assert parent.info.run_name == f"search:{SEARCH_NAME}" and parent.info.status == "FINISHED"
    assert parent.data.tags["xit.intermediate"] == "mnli" and parent.data.tags["xit.objective"] == "dev.accuracy"
    assert parent.data.params["num_samples"] == str(NUM_TRIALS)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"best.yaml", "search.yaml", "trials.csv"} <= artifacts
    configs = {t.config[TRIAL_NUMBER]: t.config for t in tune_trials(interrupted_search["search_dir"])}
    for run in children:
        number = int(run.data.tags["xit.trial_number"])
        assert run.info.run_name == f"trial-{number:03d}" and run.data.tags["xit.intermediate"] == "mnli"
        assert float(run.data.params["training.learning_rate"]) == pytest.approx(configs[number][VALUES]["learning_rate"])
        assert run.data.params["training.max_steps"] == "60"
        losses = client.get_metric_history(run.info.run_id, "train.loss")
        assert len({m.step for m in losses}) >= 2  # per-step training metrics from the workers
        dev = client.get_metric_history(run.info.run_id, "dev.accuracy")
        assert dev and {m.step for m in dev} <= {20, 40, 60}


@pytest.mark.ray
def test_best_configuration_is_the_best_completed_trial_and_specs_use_it(interrupted_search, tmp_path):
    from optuna.trial import TrialState

    search_dir = interrupted_search["search_dir"]
    study = study_trials(search_dir)
    completed = [t for t in study if t.state == TrialState.COMPLETE]
    expected = max(completed, key=lambda t: (t.value, -t.number))
    best = read_best(f"tune:{SEARCH_NAME}", search_dir.parent.parent)
    assert best["trial"] == expected.number and best["value"] == expected.value
    assert best["searched"] == pytest.approx(expected.params)
    _, parent, _ = trial_runs(interrupted_search)
    assert parent.data.metrics["best.dev.accuracy"] == expected.value and parent.data.tags["xit.best_trial"] == str(expected.number)
    tree = small_spec_tree(search_dir.parent.parent)
    tree["intermediate"][0] = {"task": "mnli", "training_from": f"tune:{SEARCH_NAME}"}
    training = validate_tree(tree).intermediate[0].training
    assert training.learning_rate == pytest.approx(expected.params["learning_rate"])
    assert training.max_steps == 60 and training.eval_every_n_steps == 20


@pytest.mark.ray
def test_objective_task_trains_the_target_task_from_each_trials_intermediate_phase(ray_cluster, tmp_path):
    """objective_task: a trial trains MNLI (searched) then XNLI from it; XNLI's English dev decides,
    the other languages' dev scores are logged beside it."""
    import json

    from mlflow.tracking import MlflowClient

    from xit_dist.tune.search import run_search

    tree = search_tree(tmp_path / "out", "objective")
    tree["base"]["evaluation"]["max_examples_per_language"] = 50
    tree["training"].update(max_steps=20, eval_every_n_steps=10)
    tree.update(
        num_samples=1,
        objective_task="xnli",
        objective_training={"max_steps": 20, "eval_every_n_steps": 10, "eval_examples": 100},
        scheduler={"grace_period": 10, "reduction_factor": 2},
    )
    summary = run_search(resolve_search_tree(tree, tmp_path), resume=False, command="xit-dist tune objective.yaml")
    assert summary.finished and summary.best is not None and summary.best.state == "completed"
    phases = {p.parent.name.split("-")[0]: json.loads(p.read_text()) for p in (summary.search_dir / "trials" / "0000" / "phases").glob("*/phase.json")}
    assert set(phases) == {"mnli", "xnli"}
    assert phases["xnli"]["init_dir"].startswith(str(summary.search_dir / "trials" / "0000" / "phases" / "mnli-"))
    assert summary.best.value == phases["xnli"]["best_score"]  # the target's English dev, not MNLI's
    client = MlflowClient(summary.tracking_uri)
    trial = client.search_runs([client.get_run(summary.parent_run_id).info.experiment_id], "attributes.run_name = 'trial-000'")[0]
    assert {"dev.xnli.accuracy.en", "dev.xnli.accuracy.de", "dev.xnli.accuracy.zh"} <= set(trial.data.metrics)
    assert {m.step for m in client.get_metric_history(trial.info.run_id, "dev.accuracy")} == {10, 20}
    nested = client.search_runs([trial.info.experiment_id], f"tags.`mlflow.parentRunId` = '{trial.info.run_id}'")
    assert [r.info.run_name for r in nested] == ["trial-000:mnli"]
    assert len(client.get_metric_history(nested[0].info.run_id, "train.loss")) >= 2


@pytest.mark.ray
def test_a_search_out_of_time_ends_early_and_stays_stopped_when_resumed(ray_cluster, tmp_path, capsys):
    """A time budget shorter than one trial: the first trial runs to the end, no second starts,
    the search ends finished with its reason (console, stopped.json, MLflow tag, --status), and
    `--resume` starts no trial."""
    import optuna
    from mlflow.tracking import MlflowClient

    from xit_dist.cli import main
    from xit_dist.tune.optuna_search import study_storage

    tree = search_tree(tmp_path / "out", "budget", address=ray_cluster.get_runtime_context().gcs_address)
    tree.update(num_samples=3, max_concurrent_trials=1, stop={"time_budget_s": 1})
    tree["training"].update(max_steps=20)
    spec_file = tmp_path / "search.yaml"
    spec_file.write_text(f"# xit-dist tune {spec_file}\n" + yaml.safe_dump(tree))
    search_dir = tmp_path / "out" / "searches" / "budget"
    outputs = []
    for extra in ((), ("--resume",)):
        run = subprocess.run(tune_command(spec_file, *extra), capture_output=True, text=True, timeout=SEARCH_TIMEOUT_S, cwd=REPO)
        assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
        assert "search stopped after 1 of 3 trials: time budget spent: " in run.stdout, run.stdout[-5000:]
        outputs.append(run.stdout)
        trials = optuna.load_study(study_name="budget", storage=study_storage(search_dir)).get_trials()
        assert [t.state.name for t in trials] == ["COMPLETE"]  # the resume started none
    assert outputs[0].count("search stops starting trials: time budget spent") == 1
    assert "trial 0 started" not in outputs[1] and (search_dir / "best.yaml").is_file()
    reason = json.loads((search_dir / "stopped.json").read_text())["reason"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tests")
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`xit.kind` = 'search'")
    assert parent.data.tags["xit.stop_reason"] == reason and parent.info.status == "FINISHED"
    capsys.readouterr()
    assert main(["tune", str(spec_file), "--status"]) == 0
    status = capsys.readouterr().out.strip().splitlines()
    assert status[0] == f"search budget ({search_dir}): 1 of 3 trials: 1 completed, 0 pruned, 0 running, 0 failed"
    assert status[-1] == f"state: stopped: {reason}"
