"""The README's demo and search with ``output_dir`` in a bucket (a real S3 server,
tests/s3_server.py), as a user runs them. The demo: the driver killed (SIGKILL) while the target
phase trains, the same command resumes from the checkpoint in the bucket (taking over the dead
driver's lease at once: same host), and a third run trains nothing; everything lands in the
bucket, the working directory stays empty and the node's cache holds only its mirror (and the
built-in assets). The search: its study, Tune state, trials and best configuration in the
bucket, and a spec planned on a machine that never saw it (an empty cache) takes its best."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import boto3
import pytest
import yaml

from tests.s3_server import seaweedfs_in_aws_environment
from tests.test_readme_commands import (
    COMMAND_TIMEOUT_S, REPO, SHORT_RUN, SHORT_TUNE, XIT, terminal_signals, user_env, wait_for_output,
)

pytestmark = [pytest.mark.ray, pytest.mark.timeout(1200)]

BUCKET = "xit-bucket-demo"


@pytest.fixture(scope="module")
def s3():
    with seaweedfs_in_aws_environment(BUCKET) as server:
        yield server


def bucket_keys(prefix: str) -> list[str]:
    s3 = boto3.session.Session().client("s3")  # a fresh session: each test server has its own keys
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [entry["Key"] for page in pages for entry in page.get("Contents", [])]


def test_demo_in_a_bucket_killed_resumes_then_reuses(s3, tmp_path):
    work, cache = tmp_path / "work", tmp_path / "cache"
    work.mkdir()
    args = ["run", str(REPO / "ray_configs" / "demo.yaml"), *SHORT_RUN, "--set", f"output_dir=s3://{BUCKET}/demo",
            "--set", "target.training.checkpoint_every_n_steps=10", "--set", "target.training.log_every_n_steps=5"]
    args[args.index("target.training.max_steps=4")] = "target.training.max_steps=40"
    env = {**user_env(), "XIT_DIST_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    log = work.parent / "killed.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([*XIT, *args], cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, preexec_fn=terminal_signals)
        try:
            wait_for_output(log, "] step 15/40", proc, timeout=COMMAND_TIMEOUT_S)  # the step-10 checkpoint is in the bucket
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    target = re.search(r"phase 2/2 target xnli \[(xnli-\w+)\]", log.read_text())[1]
    assert any(key.startswith(f"demo/ray/{target}/") for key in bucket_keys("demo/ray/")), "no checkpoint in the bucket"
    assert not any(key.endswith(f"{target}/phase.json") for key in bucket_keys("demo/phases/"))

    resumed = subprocess.run([*XIT, *args], cwd=work, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert resumed.returncode == 0, resumed.stdout[-6000:] + resumed.stderr[-3000:]
    assert "already trained: reusing" in resumed.stdout  # the intermediate phase, from the bucket
    assert "is held by a process of this host that is gone: taking it over" in resumed.stdout, resumed.stdout[-6000:]
    step = re.search(r"\] ready in .*, resumed at step (\d+)", resumed.stdout)
    assert step and int(step[1]) in (10, 20, 30), resumed.stdout[-6000:]
    assert "transfer gap" in resumed.stdout

    again = subprocess.run([*XIT, *args], cwd=work, env=env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert again.returncode == 0, again.stdout[-6000:] + again.stderr[-3000:]
    assert again.stdout.count("already trained: reusing") == 2 and "] ready in" not in again.stdout

    keys = bucket_keys("demo/")
    records = [key for key in keys if key.startswith("demo/phases/") and key.endswith("/phase.json")]
    assert len(records) == 2 and f"demo/phases/{target}/model/model.safetensors" in keys
    assert "demo/runs/demo/spec.yaml" in keys and "demo/runs/demo/xnli_results.json" in keys
    assert "demo/mlflow.db" in keys and any(key.startswith("demo/mlartifacts/") for key in keys)
    assert any(key.startswith(f"demo/phases/{target}/eval/") for key in keys)
    assert list(work.iterdir()) == []  # nothing of the run in the working directory
    assert sorted(p.name for p in cache.iterdir()) == ["data", "models", "outputs"]  # built-ins, and the bucket's mirror


def test_search_in_a_bucket_and_its_best_taken_on_another_machine(s3, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    env = {**user_env(), "XIT_DIST_CACHE": str(tmp_path / "machine-a")}
    tune = subprocess.run([*XIT, "tune", str(REPO / "ray_configs" / "tune" / "mnli.yaml"), *SHORT_TUNE,
                           "--set", f"base.output_dir=s3://{BUCKET}/search"], cwd=work, env=env, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S)
    assert tune.returncode == 0, tune.stdout[-6000:] + tune.stderr[-3000:]
    assert f"written to s3://{BUCKET}/search/searches/mnli-demo/best.yaml" in tune.stdout
    keys = bucket_keys("search/searches/mnli-demo/")
    for name in ("search.yaml", "optuna.journal", "trials.csv", "best.yaml", "tune/tuner.pkl"):
        assert f"search/searches/mnli-demo/{name}" in keys, (name, keys)
    assert any(re.fullmatch(r"search/searches/mnli-demo/trials/0000/phases/mnli-\w+/phase.json", key) for key in keys), keys
    assert "search/mlflow.db" in bucket_keys("search/")

    spec = yaml.safe_load((REPO / "ray_configs" / "demo.yaml").read_text())
    spec["output_dir"] = f"s3://{BUCKET}/search"
    spec["intermediate"][0]["training_from"] = "tune:mnli-demo"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    env["XIT_DIST_CACHE"] = str(tmp_path / "machine-b")  # never saw the search
    plan = subprocess.run([*XIT, "plan", str(tmp_path / "spec.yaml")], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    assert f"training from tune:mnli-demo (s3://{BUCKET}/search/searches/mnli-demo/best.yaml): trial 0" in plan.stdout, plan.stdout
    assert list(work.iterdir()) == []
