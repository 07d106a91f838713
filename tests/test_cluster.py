"""Job submission to a real two-node Ray cluster on this machine (``cluster/local.sh``):
``xit-dist submit --wait`` trains a phase whose workers sit on both nodes and records it in
MLflow; ``jobs``, ``logs``, ``stop``; bad addresses; secrets passed to the job stay unprinted.

Everything goes through subprocesses (the script, the CLI, Ray's Jobs SDK): this file never
starts Ray in the pytest process and uses its own ports and state directory, so it neither
needs nor disturbs the session's in-process ``ray_cluster``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import small_spec_tree

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parent.parent
XIT = [sys.executable, "-m", "xit_dist.cli"]
GCS_PORT, DASHBOARD_PORT = 26390, 28265
ADDRESS = f"http://127.0.0.1:{DASHBOARD_PORT}"
SECRET = "secret-value-123"


def cli_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "HF_TOKEN")}
    env.update(HF_HUB_OFFLINE="1", **extra)
    return env


def xit(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*XIT, *args], cwd=REPO, env=cli_env(**env), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("xit_cluster")
    env = {**cli_env(), "XIT_CLUSTER_DIR": str(state), "XIT_PYTHON": sys.executable}
    script = ["bash", str(REPO / "cluster" / "local.sh")]
    try:
        up = subprocess.run(
            [*script, "up", "--nodes", "2", "--port", str(GCS_PORT), "--dashboard-port", str(DASHBOARD_PORT)],
            env=env, capture_output=True, text=True, timeout=180,
        )
        assert up.returncode == 0, up.stdout + up.stderr
        assert ADDRESS in up.stdout
        yield ADDRESS
    finally:
        subprocess.run([*script, "down"], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("xit_submit")
    tree = small_spec_tree(root / "out", intermediate=(), name="submitted")
    tree["target"]["training"]["max_steps"] = 20
    tree["evaluation"]["languages"] = ["en"]
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.fixture(scope="module")
def submitted(cluster, spec_file):
    started = time.monotonic()
    result = xit("submit", str(spec_file), "--address", cluster, "--wait", timeout=420, HF_TOKEN=SECRET)
    print(f"submit --wait took {time.monotonic() - started:.1f}s")
    job_id = next((line.split()[1] for line in result.stdout.splitlines() if line.startswith("submitted ")), None)
    return result, job_id


def test_bad_address_one_line_exit_2(spec_file):
    started = time.monotonic()
    result = xit("submit", str(spec_file), "--address", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert time.monotonic() - started < 20
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "http://127.0.0.1:9" in lines[0], result.stderr
    assert result.stdout == ""


def test_bad_spec_exit_2_before_submitting(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntarget: {task: nope}\n")
    result = xit("submit", str(bad), "--address", "http://127.0.0.1:9")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def test_relative_output_dir_is_refused_before_submitting():
    """Results would land in the job's temporary working_dir copy and be lost with it."""
    result = xit("submit", "ray_configs/demo.yaml", "--address", "http://127.0.0.1:9")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().startswith("xit-dist: error: output_dir xit_runs: a relative path would put the results")


def test_token_auth_stays_on(cluster):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{cluster}/api/jobs/", timeout=10)
    assert err.value.code == 401


def test_submit_trains_on_both_nodes_and_tracks_in_mlflow(submitted, spec_file):
    result, job_id = submitted
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert job_id and f"job {job_id}: SUCCEEDED" in result.stdout
    passed = next(line for line in result.stdout.splitlines() if line.startswith("environment passed: "))
    assert "HF_TOKEN" in passed and "HF_HUB_OFFLINE" in passed and passed.endswith("(values not shown)")

    records = list((spec_file.parent / "out" / "phases").glob("*/phase.json"))
    assert len(records) == 1
    nodes = json.loads(records[0].read_text())["worker_nodes"]
    assert len(nodes) == 2 and len(set(nodes)) == 2, nodes

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{spec_file.parent / 'out' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tests")
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert "xnli.accuracy.en" in parents[0].data.metrics
    assert len(runs) == 2  # the parent and the target phase


def test_no_secret_in_output_logs_or_mlflow(submitted, spec_file, cluster):
    result, job_id = submitted
    assert SECRET not in result.stdout + result.stderr
    logs = xit("logs", job_id, "--address", cluster)
    assert logs.returncode == 0 and "SUCCEEDED" not in logs.stderr
    assert "xnli (test), zero-shot from English" in logs.stdout
    assert SECRET not in logs.stdout + logs.stderr

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{spec_file.parent / 'out' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tests")
    for run in client.search_runs([experiment.experiment_id]):
        recorded = json.dumps([run.data.params, run.data.tags])
        assert SECRET not in recorded


SUBMIT_SLEEPER = """
import sys
from ray.job_submission import JobSubmissionClient
client = JobSubmissionClient(sys.argv[1])
print(client.submit_job(entrypoint="echo sleeper-started && sleep 120"))
"""


def test_jobs_logs_stop(submitted, cluster):
    _, trained_id = submitted
    made = subprocess.run(
        [sys.executable, "-c", SUBMIT_SLEEPER, cluster], env=cli_env(RAY_AUTH_MODE="token"),
        capture_output=True, text=True, timeout=60,
    )
    assert made.returncode == 0, made.stderr
    sleeper = made.stdout.strip().splitlines()[-1]

    deadline = time.monotonic() + 60
    while True:
        logs = xit("logs", sleeper, "--address", cluster)
        assert logs.returncode == 0, logs.stderr
        if "sleeper-started" in logs.stdout or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert "sleeper-started" in logs.stdout

    listed = xit("jobs", "--address", cluster)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split()[1] for line in listed.stdout.splitlines()[1:]}
    assert rows.get(trained_id) == "SUCCEEDED" and rows.get(sleeper) == "RUNNING", listed.stdout

    stopped = xit("stop", sleeper, "--address", cluster)
    assert stopped.returncode == 0 and sleeper in stopped.stdout, stopped.stderr
    deadline = time.monotonic() + 30
    while "STOPPED" not in xit("jobs", "--address", cluster).stdout.split(sleeper, 1)[1].split("\n", 1)[0]:
        assert time.monotonic() < deadline, "the stopped job never reached STOPPED"
        time.sleep(1)

    missing = xit("logs", "raysubmit_does_not_exist", "--address", cluster)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
