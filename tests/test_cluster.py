"""Job submission to a real two-node Ray cluster on this machine (``cluster/local.sh``) whose
nodes share no directory (each its own cache and temp dir, ``--own-dirs``), with output_dir in
a bucket (a real S3 server, tests/s3_server.py): ``xit-dist submit --wait`` trains two phases
whose workers sit on both nodes, the second reading the first's encoder from the bucket on each
node, and records them in MLflow; ``jobs``, ``logs``, ``stop``; bad addresses; secrets passed
to the job (the bucket's among them) stay unprinted.

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
from tests.s3_server import seaweedfs_in_aws_environment

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parent.parent
XIT = [sys.executable, "-m", "xit_dist.cli"]
GCS_PORT, DASHBOARD_PORT = 26390, 28265
ADDRESS = f"http://127.0.0.1:{DASHBOARD_PORT}"
SECRET = "secret-value-123"
BUCKET = "xit-cluster-tests"


def cli_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("RAY_ADDRESS", "HF_TOKEN", "XIT_DIST_CACHE")}
    env.update(HF_HUB_OFFLINE="1", **extra)
    return env


def xit(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*XIT, *args], cwd=REPO, env=cli_env(**env), capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def s3():
    """The bucket, its endpoint and credentials in the AWS environment the submitter passes on."""
    with seaweedfs_in_aws_environment(BUCKET) as server:
        yield server


@pytest.fixture(scope="module")
def node_dirs(tmp_path_factory) -> Path:
    """node-<k>/cache and node-<k>/tmp: each node's own, as on machines that share nothing."""
    return tmp_path_factory.mktemp("nodes")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, node_dirs):
    state = tmp_path_factory.mktemp("xit_cluster")
    env = {**cli_env(), "XIT_CLUSTER_DIR": str(state), "XIT_PYTHON": sys.executable}
    script = ["bash", str(REPO / "cluster" / "local.sh")]
    try:
        up = subprocess.run(
            [*script, "up", "--nodes", "2", "--port", str(GCS_PORT), "--dashboard-port", str(DASHBOARD_PORT), "--own-dirs", str(node_dirs)],
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
    tree = small_spec_tree(f"s3://{BUCKET}/out", intermediate=("mnli",), name="submitted")
    tree["target"]["training"]["max_steps"] = 20
    # English-dev model selection on the intermediate phase: its best weights, from both nodes, in the bucket
    tree["intermediate"][0]["training"].update(max_steps=20, eval_every_n_steps=10, eval_examples=40)
    tree["evaluation"]["languages"] = ["en"]
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@pytest.fixture(scope="module")
def submitted(s3, cluster, spec_file):
    started = time.monotonic()
    result = xit("submit", str(spec_file), "--address", cluster, "--wait", timeout=420, HF_TOKEN=SECRET)
    print(f"submit --wait took {time.monotonic() - started:.1f}s")
    job_id = next((line.split()[1] for line in result.stdout.splitlines() if line.startswith("submitted ")), None)
    return result, job_id


def test_bad_address_one_line_exit_2(s3, spec_file):
    started = time.monotonic()
    result = xit("submit", str(spec_file), "--address", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert time.monotonic() - started < 20
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "http://127.0.0.1:9" in lines[0], result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("wrong", ["credentials", "endpoint"])
def test_an_unusable_bucket_is_one_line_before_submitting(s3, spec_file, wrong):
    """The submitter checks the bucket with the credentials it passes on, before the cluster is asked."""
    env = {"AWS_SECRET_ACCESS_KEY": "not-the-secret-at-all"} if wrong == "credentials" else {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    result = xit("submit", str(spec_file), "--address", "http://127.0.0.1:9", **env)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"output_dir 's3://{BUCKET}/out'" in lines[0], result.stderr
    assert ("refused the credentials" in lines[0]) if wrong == "credentials" else ("cannot reach the object store at http://127.0.0.1:9" in lines[0])
    assert "not-the-secret-at-all" not in lines[0] and s3.secret_key not in lines[0]


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


def test_submit_trains_on_both_nodes_and_tracks_in_mlflow(submitted, spec_file, node_dirs):
    result, job_id = submitted
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert job_id and f"job {job_id}: SUCCEEDED" in result.stdout
    passed = next(line for line in result.stdout.splitlines() if line.startswith("environment passed: "))
    assert "HF_TOKEN" in passed and "HF_HUB_OFFLINE" in passed and passed.endswith("(values not shown)")

    assert "AWS_SECRET_ACCESS_KEY" in passed and "AWS_ENDPOINT_URL" in passed

    import boto3

    s3 = boto3.session.Session().client("s3")  # a fresh session: each test server has its own keys
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) for o in page.get("Contents", [])]
    records = {key.split("/")[2]: json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
               for key in keys if key.startswith("out/phases/") and key.endswith("/phase.json")}
    assert len(records) == 2, keys
    for record in records.values():  # both phases on both nodes
        assert len(record["worker_nodes"]) == 2 and len(set(record["worker_nodes"])) == 2, record["worker_nodes"]
    intermediate = next(phase for phase in records if phase.startswith("mnli-"))
    assert f"out/phases/{intermediate}/encoder/model.safetensors" in keys
    assert [step for step, _ in records[intermediate]["validation"]] == [10, 20]
    best = json.loads(s3.get_object(Bucket=BUCKET, Key=f"out/phases/{intermediate}/best.json")["Body"].read())
    assert best["step"] == records[intermediate]["best_step"]
    for node in (0, 1):  # each node listed and uploaded its ranks' files
        assert f"out/phases/{intermediate}/{best['dir']}/manifest_rank{node}.json" in keys
    assert any(key.startswith("out/ray/") for key in keys) and "out/runs/submitted/xnli_results.json" in keys
    # The node without the driver read the first phase's encoder from the bucket into its own cache.
    for node in ("node-0", "node-1"):
        mirror = node_dirs / node / "cache" / "outputs" / "s3" / BUCKET / "out"
        assert (mirror / "phases" / intermediate / "encoder.xit-copied").is_file(), node
        assert (mirror / "phases" / intermediate / "encoder" / "model.safetensors").is_file(), node
    assert sorted(p.name for p in spec_file.parent.iterdir()) == ["spec.yaml"]  # nothing written beside the spec

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{head_store(node_dirs)}")  # the driver's (the head node's) store
    experiment = client.get_experiment_by_name("tests")
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert "xnli.accuracy.en" in parents[0].data.metrics
    assert len(runs) == 3  # the parent and the two phases
    assert "out/mlflow.db" in keys  # and its copy in the bucket


def head_store(node_dirs: Path) -> Path:
    return node_dirs / "node-0" / "cache" / "outputs" / "s3" / BUCKET / "out" / "mlflow.db"


def test_no_secret_in_output_logs_or_mlflow(submitted, s3, cluster, node_dirs):
    result, job_id = submitted
    secrets = [SECRET, s3.secret_key]
    assert not any(secret in result.stdout + result.stderr for secret in secrets)
    logs = xit("logs", job_id, "--address", cluster)
    assert logs.returncode == 0 and "SUCCEEDED" not in logs.stderr
    assert "xnli (test), zero-shot from English" in logs.stdout
    assert not any(secret in logs.stdout + logs.stderr for secret in secrets)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{head_store(node_dirs)}")
    experiment = client.get_experiment_by_name("tests")
    for run in client.search_runs([experiment.experiment_id]):
        recorded = json.dumps([run.data.params, run.data.tags])
        assert not any(secret in recorded for secret in secrets)


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
