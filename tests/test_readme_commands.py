"""The README's commands as a user types them in a fresh clone: relative paths, started from a
directory that holds the repository's ``ray_configs/`` and ``ds_configs/`` (a copy, so the runs
write their ``xit_runs/`` there and never into the repository), with xit-dist's and Ray's own
defaults (``tests/conftest.py`` turns Ray Train's preemption watcher and metrics off for the
suite; the commands here run without that). Long specs are cut short with ``--set``; every path
stays as the README writes it. Also here: what the embedded Ray instance listens on, and the
spec's paths (resolved once, against the directory a command starts in; object storage refused).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from xit_dist.cli import main
from xit_dist.errors import XitError
from xit_dist.config.paths import resolve_spec_paths

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
XIT = [str(Path(sys.executable).with_name("xit-dist"))] if Path(sys.executable).with_name("xit-dist").is_file() else [sys.executable, "-m", "xit_dist.cli"]
COMMAND_TIMEOUT_S = 900

# The README's demo and search, and the few --set that keep them short (no path among them).
RUN_DEMO = "xit-dist run ray_configs/demo.yaml"
SHORT_RUN = ["--set", "intermediate.0.training.max_steps=4", "--set", "target.training.max_steps=4",
             "--set", "evaluation.max_examples_per_language=20"]
TUNE_DEMO = "xit-dist tune ray_configs/tune/mnli.yaml"
SHORT_TUNE = ["--set", "num_samples=1", "--set", "training.max_steps=4", "--set", "training.eval_every_n_steps=2",
              "--set", "training.eval_examples=20", "--set", "scheduler.grace_period=2"]
# Commands that start no Ray: run in this process (the same argv, from the same directory); the
# README shows each but the first two (the demo's spec, checked before it runs).
OFFLINE_COMMANDS = [
    "xit-dist validate ray_configs/demo.yaml",
    "xit-dist plan ray_configs/demo.yaml",
    "xit-dist validate ray_configs/xnli_from_mnli.yaml",
    "xit-dist plan ray_configs/xnli_from_mnli.yaml --gpu-memory 80GiB",
    "xit-dist validate ray_configs/paper/table.yaml",
    "xit-dist data anli_plus --data-files builtin:demo",
    "xit-dist data xquad --split test --lang de --lang zh --data-files builtin:demo",
    "xit-dist tune ray_configs/tune/mnli.yaml --status",
]
# Ray Train's C++ error line a user read as a failure (Ray 2.60, every phase, watcher on).
WATCHER_LINE = "PreemptionWatcher"


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """What a fresh clone holds that the README's commands read."""
    root = tmp_path_factory.mktemp("clone")
    for name in ("ray_configs", "ds_configs"):
        shutil.copytree(REPO / name, root / name)
    return root


def user_env() -> dict[str, str]:
    """This environment less what the suite sets for itself and a user would not have."""
    env = dict(os.environ)
    for name in ("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "RAY_TRAIN_METRICS_ENABLED", "RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        env.pop(name, None)
    return env


def test_the_commands_run_here_are_the_readmes():
    for command in [RUN_DEMO, TUNE_DEMO, *OFFLINE_COMMANDS[2:]]:
        assert command in README, command


@pytest.mark.parametrize("command", OFFLINE_COMMANDS)
def test_offline_commands_as_written(command, clone, monkeypatch, capsys):
    monkeypatch.chdir(clone)
    assert main(command.split()[1:]) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    if command.startswith("xit-dist validate ray_configs/demo.yaml"):
        assert yaml.safe_load(printed)["output_dir"] == str(clone / "xit_runs")  # resolved where the command started
    if command == "xit-dist plan ray_configs/demo.yaml":
        assert f"saves its encoder to {clone / 'xit_runs' / 'phases'}" in printed


# ---------------------------------------------------------------------------- what Ray listens on

WILDCARDS = {"0.0.0.0", "::", ""}


def listeners(root_pids: list[int], seen: dict[int, set], names: dict[int, set]) -> None:
    """Add the listening TCP sockets of these processes and all their descendants to ``seen``
    (pid -> {(address, port)}) and their process titles to ``names`` (Ray retitles workers
    with each task they run)."""
    import psutil

    procs = []
    for pid in root_pids:
        try:
            root = psutil.Process(pid)
            procs += [root, *root.children(recursive=True)]
        except psutil.Error:
            pass
    for proc in procs:
        try:
            title = proc.name()
            sockets = {(c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            continue
        names.setdefault(proc.pid, set()).add(title)
        seen.setdefault(proc.pid, set()).update(sockets)


def exposed(seen: dict[int, set], names: dict[int, set], allow_train_workers: bool) -> list[str]:
    """Sockets on every interface. A Ray Train worker's is allowed where asked: rank 0's
    torch.distributed TCPStore (the process group's rendezvous), which torch binds to every
    interface whatever the master address (README, "What listens where")."""
    found = []
    for pid, sockets in seen.items():
        worker = any("RayTrainWorker" in title for title in names.get(pid, ()))
        for address, port in sorted(sockets):
            if address in WILDCARDS and not (allow_train_workers and worker):
                found.append(f"{address}:{port} {sorted(names.get(pid, ()))}")
    return found


def run_watching_sockets(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, dict, dict]:
    log = cwd / f"{args[0]}.log"
    seen: dict[int, set] = {}
    names: dict[int, set] = {}
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen([*XIT, *args], cwd=cwd, env=user_env(), stdout=out, stderr=subprocess.STDOUT, text=True)
        while proc.poll() is None and time.monotonic() - started < COMMAND_TIMEOUT_S:
            listeners([proc.pid], seen, names)
            time.sleep(0.5)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    print(f"xit-dist {' '.join(args)}: {time.monotonic() - started:.0f} s")
    return subprocess.CompletedProcess(args, proc.returncode, log.read_text(), ""), seen, names


def wait_for_output(log: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, f"no {text!r} within {timeout:.0f} s:\n{log.read_text()[-4000:]}"
        time.sleep(0.2)


@pytest.mark.ray
def test_readme_demo_interrupted_then_rerun(clone):
    """`xit-dist run ray_configs/demo.yaml`, short, as a user runs it: Ctrl-C (SIGINT to the
    process group, as a terminal sends it) while the target phase trains gives exit 130, the
    resume command and the MLflow runs KILLED; the same command again reuses the intermediate
    phase, resumes the target's from its newest checkpoint and ends with the results under ./xit_runs.
    Neither prints Ray's PreemptionWatcher error line; their Ray listens on the loopback only.
    (One command interrupted, then finished: each starts its own Ray, the costly part.)"""
    from mlflow.tracking import MlflowClient

    args = [*RUN_DEMO.split()[1:], *SHORT_RUN]
    args[args.index("target.training.max_steps=4")] = "target.training.max_steps=40"
    args += ["--set", "target.training.checkpoint_every_n_steps=10", "--set", "target.training.log_every_n_steps=5"]
    seen: dict[int, set] = {}
    names: dict[int, set] = {}
    log = clone / "interrupted.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*XIT, *args], cwd=clone, env={**user_env(), "PYTHONUNBUFFERED": "1"}, stdout=out,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True, preexec_fn=terminal_signals)
        try:
            wait_for_output(log, "] step 15/40", proc, timeout=COMMAND_TIMEOUT_S)  # the step-10 checkpoint is written
            listeners([proc.pid], seen, names)
            os.killpg(proc.pid, signal.SIGINT)
            assert proc.wait(timeout=120) == 130, log.read_text()[-4000:]
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    interrupted = log.read_text()
    driver_lines = [line for line in interrupted.strip().splitlines() if "(RayTrainWorker" not in line]  # workers' last lines may follow
    assert driver_lines[-1] == (
        f"xit-dist: interrupted; rerun `xit-dist {' '.join(args)}` to resume from the last checkpoints")
    client = MlflowClient(f"sqlite:///{clone / 'xit_runs' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("xit-dist-demo").experiment_id])
    assert sorted(r.info.status for r in runs if r.info.run_name != "intermediate:mnli") == ["KILLED", "KILLED"]

    proc, seen_again, names_again = run_watching_sockets(args, clone)
    assert proc.returncode == 0, proc.stdout[-6000:]
    resumed = re.search(r"\] ready in .*, resumed at step (\d+)", proc.stdout)  # the newest checkpoint before Ctrl-C took effect
    assert "already trained: reusing" in proc.stdout and resumed and int(resumed[1]) in (10, 20, 30), proc.stdout[-6000:]
    assert "transfer gap" in proc.stdout
    assert len(list((clone / "xit_runs" / "phases").glob("*/phase.json"))) == 2
    for output in (interrupted, proc.stdout):
        assert WATCHER_LINE not in output and "max_restarts > 0" not in output, output[-6000:]
    for pid, sockets in seen_again.items():
        seen.setdefault(pid, set()).update(sockets)
        names.setdefault(pid, set()).update(names_again.get(pid, set()))
    assert len(seen) > 5  # the GCS, raylet, dashboard, agents and workers were seen
    assert exposed(seen, names, allow_train_workers=True) == []


def terminal_signals() -> None:
    """Ctrl-C as a terminal user has it: a suite started in the background of a non-interactive
    shell ignores SIGINT, and its children would inherit that (Python then never raises
    KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGQUIT, signal.SIG_DFL)


@pytest.mark.ray
def test_readme_search(clone, ray_cluster):
    """`xit-dist tune ray_configs/tune/mnli.yaml`, one short trial, on the session's Ray (a
    trial runs in a working directory of Tune's there too): the base spec's relative output_dir
    is where the command started, not in the trial's working directory."""
    address = ray_cluster.get_runtime_context().gcs_address
    proc, _, _ = run_watching_sockets([*TUNE_DEMO.split()[1:], *SHORT_TUNE, "--set", f"base.distributed.address={address}"], clone)
    assert proc.returncode == 0, proc.stdout[-6000:]
    search_dir = clone / "xit_runs" / "searches" / "mnli-demo"
    assert (search_dir / "best.yaml").is_file() and (search_dir / "optuna.journal").is_file()
    assert f"written to {search_dir / 'best.yaml'}" in proc.stdout
    assert WATCHER_LINE not in proc.stdout


@pytest.mark.ray
def test_embedded_ray_listens_on_the_loopback_only(ray_cluster):
    """The session's instance, started as ``start_ray(None)`` starts a user's: every process
    it started (GCS, raylet, dashboard and its metrics, the agents, the autoscaler's metrics,
    idle workers) listens on 127.0.0.1 only."""
    import psutil

    ray_children = [p.pid for p in psutil.Process().children() if "ray" in " ".join(p.cmdline())]
    seen: dict[int, set] = {}
    names: dict[int, set] = {}
    listeners(ray_children, seen, names)
    assert sum(len(s) for s in seen.values()) >= 5, names
    assert exposed(seen, names, allow_train_workers=False) == []
    assert ray_cluster.get_runtime_context().gcs_address.startswith("127.0.0.1:")


# ---------------------------------------------------------------------------- the spec's paths


def test_every_path_of_a_spec_resolves_against_the_start_directory(tmp_path):
    (tmp_path / "models" / "mine").mkdir(parents=True)
    (tmp_path / "ds_configs").mkdir()
    (tmp_path / "ds_configs" / "custom.json").write_text("{}")
    tree = {
        "model": {"name_or_path": "models/mine"},
        "data": {"local_dir": "mirror", "task_files": {"ccg": "./ccg"}},
        "intermediate": [{"task": "mnli", "training_from": "runs/best.yaml", "language_files": {"de": "../de"},
                          "mlm": {"files": ["corpus.txt"]}},
                         {"task": "qqp", "training_from": "tune:qqp"}],
        "target": {"task": "xnli"},
        "distributed": {"deepspeed_config": "custom"},
        "tracking": {"uri": "sqlite:///store/mlflow.db"},
    }
    resolved = resolve_spec_paths(tree, tmp_path, "xit_runs")
    assert resolved["output_dir"] == str(tmp_path / "xit_runs")  # the default, too
    assert resolved["model"]["name_or_path"] == str(tmp_path / "models" / "mine")
    assert resolved["data"] == {"local_dir": str(tmp_path / "mirror"), "task_files": {"ccg": str(tmp_path / "ccg")}}
    stage = resolved["intermediate"][0]
    assert stage["training_from"] == str(tmp_path / "runs" / "best.yaml")
    assert stage["language_files"] == {"de": str(tmp_path.parent / "de")}
    assert stage["mlm"]["files"] == [str(tmp_path / "corpus.txt")]
    assert resolved["intermediate"][1]["training_from"] == "tune:qqp"
    assert resolved["distributed"]["deepspeed_config"] == str(tmp_path / "ds_configs" / "custom.json")
    assert resolved["tracking"]["uri"] == f"sqlite:///{tmp_path}/store/mlflow.db"
    assert resolve_spec_paths(resolved, tmp_path / "elsewhere", "xit_runs") == resolved  # twice changes nothing
    assert "output_dir" not in tree and tree["data"]["local_dir"] == "mirror"  # the input is left as it was


@pytest.mark.parametrize(
    "field, value",
    [
        ("model.name_or_path", "FacebookAI/xlm-roberta-large"),  # a hub id (no such directory here)
        ("model.name_or_path", "builtin:xlmr-tiny"),
        ("data.local_dir", "builtin:demo"),
        ("distributed.deepspeed_config", "zero2"),  # the repository's own: found by name anywhere
        ("tracking.uri", "http://127.0.0.1:5000"),
        ("tracking.uri", "sqlite:////abs/mlflow.db"),
        ("tracking.uri", "databricks"),
    ],
)
def test_what_is_not_a_relative_path_stays_as_written(tmp_path, field, value):
    section, key = field.split(".")
    resolved = resolve_spec_paths({section: {key: value}}, tmp_path, "xit_runs")
    assert resolved[section][key] == value


def test_a_search_specs_base_paths_are_fixed_where_tune_starts(clone, monkeypatch, tmp_path):
    """A trial runs in a working directory of Tune's: the search it reads must be the driver's."""
    from xit_dist.tune.search_spec import load_search_spec

    monkeypatch.chdir(clone)
    search = load_search_spec("ray_configs/tune/mnli.yaml")
    assert search.base["output_dir"] == str(clone / "xit_runs")
    monkeypatch.chdir(tmp_path)  # where a trial runs
    assert search.search_dir() == clone / "xit_runs" / "searches" / "mnli-demo"
    assert search.trial_spec({}).output_dir == str(clone / "xit_runs")


def test_a_grid_cells_paths_are_absolute(clone, monkeypatch):
    from xit_dist.plan.grid import load_grid

    monkeypatch.chdir(clone)
    grid = load_grid("ray_configs/studies/data_size.yaml")  # output_dir: xit_runs/studies
    assert {cell.spec.output_dir for cell in grid.cells} == {str(clone / "xit_runs" / "studies")}


def test_submit_keeps_paths_for_the_job_and_refuses_stores_that_would_vanish(monkeypatch):
    """A job resolves its paths where it runs (the shipped repository); a relative output_dir or
    sqlite store would be written into its temporary working directory."""
    from xit_dist.run.submit import build_submission

    monkeypatch.chdir(REPO)
    entrypoint, _ = build_submission("ray_configs/demo.yaml", ["output_dir=/shared/runs"])
    assert entrypoint.endswith("run ray_configs/demo.yaml --set output_dir=/shared/runs --set distributed.address=auto")
    with pytest.raises(XitError, match=r"^output_dir xit_runs: a relative path would put the results in the job's temporary"):
        build_submission("ray_configs/demo.yaml", [])
    with pytest.raises(XitError, match=r"^tracking.uri sqlite:///mlflow.db: a relative store would be written in the job's"):
        build_submission("ray_configs/demo.yaml", ["output_dir=/shared/runs", "tracking.uri=sqlite:///mlflow.db"])


# ---------------------------------------------------------------------------- object storage


@pytest.mark.parametrize(("uri", "expected"), [
    ("hdfs://namenode/runs", "object storage hdfs:// is not supported: s3:// is"),
    ("gs://bucket/runs", "gs:// is not supported yet (the phase lease rests on S3's conditional writes)"),
    ("file:///tmp/runs", "a file:// URI: write it as a plain path"),
    ("s3:///prefix", "names no bucket"),
    ("s3://bucket/prefix?endpoint_override=x", "options in the URI are not supported"),
])
@pytest.mark.parametrize("command", ["validate", "plan", "run"])
def test_an_unusable_output_dir_uri_is_one_line_before_ray(uri, expected, command, clone, monkeypatch, capsys):
    monkeypatch.chdir(clone)
    assert main([command, "ray_configs/demo.yaml", "--set", f"output_dir={uri}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("xit-dist: error: ray_configs/demo.yaml: output_dir: "), err
    assert expected in err
    assert not any(p.name.endswith(":") for p in clone.iterdir())  # no local directory named 's3:'
