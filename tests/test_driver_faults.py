"""Faults around a run, on real components: two drivers on one spec, a dead MLflow server, a
full disk (Ctrl-C: tests/test_readme_commands.py, on the README's demo command). The MLflow server, tmpfs and Ray tests are heavy: run them through the
lock (COMMON rules), one at a time."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import small_spec_tree
from xit_dist.tracking.store import Tracker

REPO = Path(__file__).resolve().parents[1]
PHASE_HASH = "ab" * 32


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sqlite_store(directory: Path) -> tuple[str, Tracker]:
    """A store whose schema exists (two processes creating it at once crash: STACK_NOTES)."""
    uri = f"sqlite:///{directory / 'mlflow.db'}"
    return uri, Tracker(uri, "faults", directory / "mlartifacts")


# ---------------------------------------------------------------- two drivers on one spec

# One driver's MLflow start-up: the parent by the spec's fingerprint, then a child per phase hash
# (30 phases: enough that drivers released at the same instant overlap on some), then results.
DRIVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from xit_dist.tracking.store import Tracker
    store, start = Path(sys.argv[1]), float(sys.argv[2])
    tracker = Tracker(f"sqlite:///{store / 'mlflow.db'}", "faults", store / "mlartifacts", lock_dir=store)
    time.sleep(max(0.0, start - time.time()))
    parent = tracker.parent_run("spec", "fingerprint")
    children = [tracker.child_run(parent, "target:xnli", f"{i:02d}" + sys.argv[3], {"xit.kind": "target"}) for i in range(30)]
    tracker.log_new_metrics(parent, {"xnli.accuracy.en": 61.5, "xnli.accuracy.avg": 55.0})
    print(parent, *children)
    """
)


def test_drivers_started_together_share_one_parent_and_one_child_run(tmp_path):
    """Four drivers of one spec at the same instant: one parent, one child per phase hash, and
    the parent's results logged once (before the lock: 62 runs for 31)."""
    uri, tracker = sqlite_store(tmp_path)
    start = time.time() + 4.0  # all four have imported MLflow by then
    drivers = [subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), str(start), PHASE_HASH], cwd=REPO,
                                stdout=subprocess.PIPE, text=True) for _ in range(4)]
    answers = {tuple(d.communicate(timeout=120)[0].split()) for d in drivers}
    assert all(d.returncode == 0 for d in drivers)
    assert len(answers) == 1, answers
    assert len(tracker.client.search_runs([tracker.experiment_id])) == 31
    ((parent, *_),) = answers
    assert [m.value for m in tracker.client.get_metric_history(parent, "xnli.accuracy.en")] == [61.5]


def test_the_same_results_logged_again_add_no_points(tmp_path):
    _, tracker = sqlite_store(tmp_path)
    run = tracker.parent_run("spec", "fingerprint")
    for _ in range(2):
        tracker.log_new_metrics(run, {"xnli.accuracy.en": 61.5})
    tracker.log_new_metrics(run, {"xnli.accuracy.en": 62.0})  # a changed value is logged
    assert [m.value for m in tracker.client.get_metric_history(run, "xnli.accuracy.en")] == [61.5, 62.0]


# ---------------------------------------------------------------- MLflow down during training

def start_mlflow_server(store_uri: str, port: int, log: Path) -> subprocess.Popen:
    """A real ``mlflow server`` on the sqlite store, once /health answers (STACK_NOTES: ~8 s)."""
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store_uri, "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=log.parent,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, log.read_text()[-2000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)
    os.killpg(server.pid, signal.SIGKILL)
    raise AssertionError(f"mlflow server did not come up:\n{log.read_text()[-2000:]}")


def test_metrics_sink_never_waits_for_a_dead_server_and_delivers_when_it_is_back(tmp_path):
    """Nothing listens at the tracking URI: ``log`` returns at once; the values are kept and
    reach the run when a server comes up there; a resumed attempt's repeated steps are skipped."""
    from xit_dist.train.metrics_sink import MetricsSink

    store_uri, tracker = sqlite_store(tmp_path)
    run = tracker.parent_run("spec", "fingerprint")
    port = free_port()
    said: list[str] = []
    sink = MetricsSink(f"http://127.0.0.1:{port}", run, tmp_path / "pending.json", say=said.append)
    started = time.monotonic()
    for step in range(1, 41):
        sink.log(step, {"train.loss": 1.0 / step})
    assert time.monotonic() - started < 0.5
    deadline = time.monotonic() + 30
    while not said and time.monotonic() < deadline:
        time.sleep(0.1)
    assert said and said[0].startswith("MLflow does not answer") and "training goes on" in said[0]
    server = start_mlflow_server(store_uri, port, tmp_path / "server.log")
    try:
        assert sink.close(timeout=60) == []
        resumed = MetricsSink(f"http://127.0.0.1:{port}", run, say=said.append)
        for step in range(31, 51):  # steps 31-40 again, as after a resume from step 30
            resumed.log(step, {"train.loss": 1.0 / step})
        assert resumed.close(timeout=60) == []
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    history = tracker.client.get_metric_history(run, "train.loss")
    assert sorted(m.step for m in history) == list(range(1, 51))
    assert not (tmp_path / "pending.json").exists()


def test_values_a_dead_server_never_took_are_left_for_the_driver(tmp_path):
    from xit_dist.train.metrics_sink import MetricsSink, send_pending

    _, tracker = sqlite_store(tmp_path)
    run = tracker.parent_run("spec", "fingerprint")
    phase_dir = tmp_path / "phase"
    phase_dir.mkdir()
    sink = MetricsSink(f"http://127.0.0.1:{free_port()}", run, phase_dir / "mlflow_pending.json", say=lambda line: None)
    for step in (10, 20):
        sink.log(step, {"train.loss": 0.5, "train.learning_rate": 1e-3})
    assert len(sink.close(timeout=1.0)) == 4
    tracker.log_metrics(run, {"train.loss": 0.5}, step=10)  # went out at the last moment
    assert send_pending(tracker.client, run, phase_dir) == 3
    assert sorted(m.step for m in tracker.client.get_metric_history(run, "train.loss")) == [10, 20]
    assert not (phase_dir / "mlflow_pending.json").exists()


# ---------------------------------------------------------------- a full disk

@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real 4 MiB filesystem that fills up (mounting needs root)."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> None:
    with open(directory / "ballast", "ab") as ballast:
        try:
            while True:
                ballast.write(b"\0" * 65536)
        except OSError as err:
            assert err.errno == errno.ENOSPC


def test_ending_the_runs_on_a_full_disk_never_hides_the_error(tiny_tmpfs, capsys):
    """The store sits on the disk that filled up: the first error (ENOSPC) goes on to the user
    unchanged, and the runs end FAILED (the store's reserve makes room for that); without a
    reserve, not being able to end them is one warning line, never a second error."""
    from xit_dist.run.runs import runs_end_on_error

    def fail_with_a_full_disk(runs: list[str]) -> OSError:
        with pytest.raises(OSError) as raised:
            with runs_end_on_error(tracker, lambda: runs):
                raise OSError(errno.ENOSPC, "No space left on device", str(tiny_tmpfs / "ray" / "step-00000010"))
        return raised.value

    _, tracker = sqlite_store(tiny_tmpfs)
    first, second = tracker.parent_run("spec", "one"), tracker.parent_run("spec", "two")
    fill(tiny_tmpfs)
    capsys.readouterr()
    assert fail_with_a_full_disk([first]).errno == errno.ENOSPC
    assert tracker.client.get_run(first).info.status == "FAILED"
    assert capsys.readouterr().err == ""
    fill(tiny_tmpfs)  # the reserve's room taken too
    assert fail_with_a_full_disk([second]).errno == errno.ENOSPC
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("xit-dist: warning: could not mark the MLflow runs FAILED"), warning


def test_a_disk_without_room_for_the_checkpoints_is_said_before_training(tiny_tmpfs):
    from xit_dist.plan.phases import build_plan
    from xit_dist.run.session import warn_if_disk_short
    from xit_dist.config.load import validate_tree

    spec = validate_tree(small_spec_tree(tiny_tmpfs, intermediate=("mnli",)))
    said: list[str] = []
    warn_if_disk_short(spec, build_plan(spec), tiny_tmpfs, said.append)
    assert len(said) == 1 and said[0].startswith(f"warning: output_dir {tiny_tmpfs} has ")
    assert "the 2 phase(s) to train need about" in said[0]
    roomy = validate_tree(small_spec_tree(tiny_tmpfs.parent, intermediate=("mnli",)))
    said.clear()
    warn_if_disk_short(roomy, build_plan(roomy), tiny_tmpfs.parent, said.append)
    assert said == []


@pytest.mark.ray
def test_a_disk_that_fills_up_mid_phase_is_the_one_error_and_the_runs_end_failed(ray_cluster, tiny_tmpfs):
    """output_dir on a real 4 MiB filesystem: the warning comes before training, the step-10
    checkpoint (about 3 MiB) does not fit, and the run's error is that, naming where."""
    from xit_dist.errors import DiskFullError
    from xit_dist.run.scheduler import run_experiment
    from xit_dist.config.load import validate_tree

    tree = small_spec_tree(tiny_tmpfs, intermediate=(), name="full")
    tree["target"]["training"].update(max_steps=20, checkpoint_every_n_steps=10)
    tree["distributed"]["max_failures"] = 0
    said: list[str] = []
    where = rf"{tiny_tmpfs}/ray/xnli-\w+ \(its checkpoints\)"
    with pytest.raises(DiskFullError, match=rf"^No space left on device writing {where}: output_dir {tiny_tmpfs} has .* free; free space, then rerun"):
        run_experiment(validate_tree(tree), out=said.append)
    assert [line for line in said if line.startswith(f"warning: output_dir {tiny_tmpfs} has ")]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tiny_tmpfs / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tests").experiment_id])
    assert sorted((r.info.run_name, r.info.status) for r in runs) == [("full", "FAILED"), ("target:xnli", "FAILED")]
