"""The filesystem of an object-store output_dir (xit_dist/run/object_store.py) against a real S3
server (SeaweedFS, tests/s3_server.py): the check that runs before any cluster resources are
used passes on a usable store and says each way a store is unusable as one line, quickly and
without the credentials in it; and the helpers round-trip what they write."""

from __future__ import annotations

import socket
import time
import uuid

import boto3
import pyarrow.fs as pafs
import pytest

from tests.s3_server import seaweedfs_in_aws_environment
from xit_dist.errors import XitError
from xit_dist.run.object_store import PROBE_PREFIX, check_output_store, explain
from xit_dist.tracking.object_files import (
    download_file,
    exists,
    is_object_store_uri,
    open_output_store,
    read_text,
    upload_file,
    write_text,
)

pytestmark = pytest.mark.timeout(120)

BUCKET = "xit-store-tests"


@pytest.fixture(scope="module")
def s3():
    """One SeaweedFS for the module, its credentials and endpoint in the standard AWS environment
    (which pyarrow reads), with the test bucket created."""
    with seaweedfs_in_aws_environment(BUCKET) as server:
        yield server, boto3.session.Session().client("s3")


@pytest.fixture
def run_uri(s3):
    """A fresh output_dir in the bucket."""
    return f"s3://{BUCKET}/runs/{uuid.uuid4().hex[:8]}"


def check_fails(uri: str) -> str:
    """The one line ``check_output_store`` fails with."""
    with pytest.raises(XitError) as failure:
        check_output_store(uri)
    line = str(failure.value)
    assert "\n" not in line and line.startswith(f"output_dir {uri!r}: "), line
    return line


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("s3://bucket/prefix", True), ("gs://bucket", True), ("/data/runs", False), ("runs/a", False), ("file:///data/runs", False), (None, False)],
)
def test_which_values_are_object_store_uris(value, expected):
    assert is_object_store_uri(value) is expected


def test_the_endpoint_comes_from_the_environment_and_timeouts_are_bounded(s3, monkeypatch):
    server, _ = s3
    filesystem, root = open_output_store(f"s3://{BUCKET}/runs/a/")
    options = filesystem.__reduce__()[1][0]
    assert root == f"{BUCKET}/runs/a"
    assert options["endpoint_override"] == server.endpoint_url
    assert 0 < options["connect_timeout"] <= 5 and 0 < options["request_timeout"] <= 10
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint_url)
    assert open_output_store(f"s3://{BUCKET}")[0].__reduce__()[1][0]["endpoint_override"] == server.endpoint_url


def test_a_usable_store_passes_the_check_and_keeps_no_probe(s3, run_uri):
    _, client = s3
    check_output_store(run_uri)
    check_output_store(f"s3://{BUCKET}")
    listed = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    assert not [entry["Key"] for entry in listed if PROBE_PREFIX in entry["Key"]]


def test_text_and_files_round_trip(s3, run_uri, tmp_path):
    assert not exists(f"{run_uri}/spec.yaml")
    write_text(f"{run_uri}/spec.yaml", "model: tiny\n")
    assert exists(f"{run_uri}/spec.yaml") and exists(run_uri)
    assert read_text(f"{run_uri}/spec.yaml") == "model: tiny\n"
    local = tmp_path / "weights.bin"
    local.write_bytes(bytes(range(256)) * 4096)
    upload_file(local, f"{run_uri}/phases/p/weights.bin")
    download_file(f"{run_uri}/phases/p/weights.bin", tmp_path / "back" / "weights.bin")
    assert (tmp_path / "back" / "weights.bin").read_bytes() == local.read_bytes()


def test_a_closed_endpoint_is_one_line_naming_it_quickly(s3, run_uri, monkeypatch):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    started = time.monotonic()
    line = check_fails(run_uri)
    assert time.monotonic() - started < 15
    assert f"cannot reach the object store at {endpoint}" in line and "AWS_ENDPOINT_URL" in line


def test_an_endpoint_that_never_answers_fails_within_the_bound(s3, run_uri, monkeypatch):
    with socket.socket() as silent:  # accepts connections (the kernel's backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        started = time.monotonic()
        line = check_fails(run_uri)
    assert time.monotonic() - started < 15
    assert f"cannot reach the object store at {endpoint}" in line


@pytest.mark.parametrize("wrong", ["AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"])
def test_refused_credentials_are_one_line_without_them(s3, run_uri, monkeypatch, wrong):
    server, _ = s3
    given = "wrong" + uuid.uuid4().hex
    monkeypatch.setenv(wrong, given)
    line = check_fails(run_uri)
    assert "refused the credentials in AWS_ACCESS_KEY_ID" in line and "AWS_SECRET_ACCESS_KEY" in line
    for secret in (server.secret_key, server.access_key, given):
        assert secret not in line


def test_a_missing_bucket_is_one_line_and_is_not_created(s3, monkeypatch):
    _, client = s3
    bucket = f"missing-{uuid.uuid4().hex[:8]}"
    line = check_fails(f"s3://{bucket}/runs/a")
    assert f"bucket {bucket!r} does not exist" in line
    assert bucket not in [entry["Name"] for entry in client.list_buckets()["Buckets"]]


def test_seaweedfs_creates_a_missing_bucket_on_write(s3):
    """Why the check looks for the bucket before writing: a write alone would not find it missing."""
    _, client = s3
    bucket = f"auto-{uuid.uuid4().hex[:8]}"
    write_text(f"s3://{bucket}/x", "made")
    assert bucket in [entry["Name"] for entry in client.list_buckets()["Buckets"]]
    filesystem, _ = open_output_store(f"s3://{bucket}")
    assert filesystem.get_file_info(bucket).type == pafs.FileType.Directory


def test_a_denied_write_is_one_line_naming_the_action(monkeypatch):
    """SeaweedFS's ``weed mini`` refuses to create a less privileged identity (its IAM writes are
    disabled), so a store's denial is given as pyarrow words it: by its error code."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY123456")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    uri = "s3://bkt/runs/a"
    denied = OSError("When initiating multiple part upload for key 'runs/a/p' in bucket 'bkt': AWS Error ACCESS_DENIED during CreateMultipartUpload operation: Access Denied")
    line = str(explain(denied, uri, None, "write 'bkt/runs/a/p'"))
    assert line.startswith(f"output_dir {uri!r}: access denied to write 'bkt/runs/a/p' with the credentials in AWS_ACCESS_KEY_ID (AKIA...)")
    echoed = OSError("AWS Error UNKNOWN (HTTP status 500) during PutObject operation: key AKIAEXAMPLEKEY123456 secret s3cr3t-value\nmore")
    line = str(explain(echoed, uri, None, "write 'bkt/runs/a/p'"))
    assert "AKIAEXAMPLEKEY123456" not in line and "s3cr3t-value" not in line and "\n" not in line
