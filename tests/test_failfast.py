"""Mistakes about the cluster and its services: one clear line each, before any training."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import small_spec_tree
from xit_dist.errors import XitError
from xit_dist.config.load import validate_tree
from xit_dist.run.storage import check_shared_storage, filesystem_type

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "ray_configs" / "demo.yaml"

MOUNTS = """\
/dev/vda / ext4 rw,relatime 0 0
nfs-server:/export /mnt/shared nfs4 rw,relatime 0 0
gcsfuse-bucket /mnt/bucket fuse.gcsfuse rw 0 0
tmpfs /mnt/shared/tmp tmpfs rw 0 0
"""


def test_filesystem_type_takes_the_longest_mount_point(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(MOUNTS)
    assert filesystem_type(Path("/home/me/runs"), mounts) == "ext4"
    assert filesystem_type(Path("/mnt/shared/runs"), mounts) == "nfs4"
    assert filesystem_type(Path("/mnt/shared/tmp/x"), mounts) == "tmpfs"
    assert filesystem_type(Path("/mnt/sharedother"), mounts) == "ext4"  # a prefix of a name is not a mount


def test_local_disk_is_refused_only_when_the_cluster_spans_machines():
    check_shared_storage(Path("/data/runs"), {"10.0.0.1"}, assume_shared=False, fs_kind="ext4")  # one machine
    check_shared_storage(Path("/mnt/shared/runs"), {"10.0.0.1", "10.0.0.2"}, assume_shared=False, fs_kind="nfs4")
    check_shared_storage(Path("/mnt/bucket/runs"), {"10.0.0.1", "10.0.0.2"}, assume_shared=False, fs_kind="fuse.gcsfuse")
    check_shared_storage(Path("/data/runs"), {"10.0.0.1", "10.0.0.2"}, assume_shared=True, fs_kind="ext4")
    with pytest.raises(XitError, match=r"output_dir /data/runs: on a local ext4 filesystem, but the cluster spans 2 machines"):
        check_shared_storage(Path("/data/runs"), {"10.0.0.1", "10.0.0.2"}, assume_shared=False, fs_kind="ext4")


def test_mlflow_server_that_does_not_answer(tmp_path):
    """Nothing listens on port 9: one line naming the URI, exit 2, in seconds, no Ray started."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "xit_dist.cli", "run", str(DEMO), "--set", "tracking.uri=http://127.0.0.1:9",
         "--set", f"output_dir={tmp_path}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("xit-dist: error: tracking.uri http://127.0.0.1:9: the MLflow server does not answer")
    assert "phase" not in proc.stdout and "Ray" not in proc.stdout + proc.stderr
    assert time.monotonic() - started < 60


@pytest.mark.ray
def test_cluster_without_the_resources_the_spec_needs(ray_cluster, tmp_path):
    from xit_dist.run.scheduler import run_experiment

    tree = small_spec_tree(tmp_path, intermediate=())
    tree["distributed"]["num_workers"] = 4  # the local cluster has 2 CPUs
    tree["target"]["training"]["batch_size"] = 32
    started = time.monotonic()
    with pytest.raises(XitError, match=r"distributed: the cluster has 2 CPU / 0 GPU, the spec needs 4 CPU / 0 GPU \(4 workers\)"):
        run_experiment(validate_tree(tree))
    assert time.monotonic() - started < 30
    assert not (tmp_path / "ray").exists()  # no trainer was started
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tests")
    assert client.search_runs([experiment.experiment_id]) == []  # and no run left dangling


def test_qa_windows_without_room_for_context_are_refused_before_ray(tmp_path):
    """The tokenizer would panic inside a worker without naming a setting."""
    from xit_dist.errors import SpecError
    from xit_dist.plan.preflight import preflight

    tree = small_spec_tree(tmp_path, intermediate=(), target="xquad")  # max_seq_length 64, doc_stride 128
    with pytest.raises(SpecError, match=r"^target: training.doc_stride 128 must be smaller"):
        preflight(validate_tree(tree))
