"""The cluster a run uses: connect to the one the spec names (or start a local Ray in-process),
then refuse one too small for the spec's worker groups or without storage every node shares."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

from xit_dist.config.spec import ExperimentSpec
from xit_dist.config.layout import in_bucket
from xit_dist.run.storage import check_shared_storage, cluster_hosts

API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"
LOOPBACK = "127.0.0.1"
# Ray Train's preemption watcher polls for nodes being drained (spot instances going away); a
# local instance has none, and each watcher's start printed Ray's core_worker error line about
# its restartable actor's arguments into the console. Off for the embedded instance only.
LOCAL_RAY_DEFAULTS = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def start_ray(address: str | None) -> None:
    """Connect to the cluster the spec names, or start a local Ray in-process."""
    import ray

    if ray.is_initialized():
        return
    from xit_dist.console import WORKER_ENV

    # address None: always a new local instance ("local"), never a `ray start` cluster that
    # happens to run on this machine; name one ("auto", "host:port") to use a cluster.
    if address is not None:
        # Connecting to an instance on the loopback (another embedded one, as a test's or a second
        # driver's): Ray would rewrite 127.0.0.1 in the address to this machine's IP, where it listens not.
        with _loopback_node_ip() if _names_loopback(address) else contextlib.nullcontext():
            ray.init(address=address, logging_level="WARNING", runtime_env={"env_vars": WORKER_ENV})
        return
    for name, value in LOCAL_RAY_DEFAULTS.items():
        os.environ.setdefault(name, value)  # read by Ray Train in this process at each fit; a user's setting wins
    # Ray Train frees a run's resources when its driver dies (a trial a search stopped) through
    # the State API, which finds "the" cluster of a machine by auto-detection and fails when
    # several Ray instances run there. The instance's own dashboard address, in the environment
    # its processes start with (and so every worker), removes the guess. It is taken back out of
    # this process's environment: it would redirect later Jobs API calls to other clusters.
    port = _free_local_port()
    with _environment({API_SERVER_ENV: f"http://{LOOPBACK}:{port}"}), _loopback_node_ip():
        ray.init(
            address="local", logging_level="WARNING", runtime_env={"env_vars": WORKER_ENV},
            dashboard_host=LOOPBACK, dashboard_port=port, _node_ip_address=LOOPBACK,
        )


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """``values`` in this process's environment (and so in every Ray process it starts) while
    the block runs; the previous values are put back after it."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _names_loopback(address: str) -> bool:
    """``127.0.0.1:6379``, ``localhost:6379``, ``ray://127.0.0.1:10001``: an address on this machine's loopback."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


@contextlib.contextmanager
def _loopback_node_ip():
    """The embedded instance's node IP is 127.0.0.1, so that everything it starts listens on the
    loopback only: GCS, raylet, workers, the dashboard, its agent and metrics, the autoscaler's
    metrics, the runtime-env agent (measured with Ray 2.60; each binds to the node IP when that
    is a loopback address, else to every interface). Ray only takes a loopback node IP where it
    runs no multi-machine clusters (macOS, Windows): ``ray.init`` turns ``_node_ip_address=
    "127.0.0.1"`` into the machine's address unless ``ray_constants.ENABLE_RAY_CLUSTER`` (read
    once, at import, from RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER) is false. It is false during
    ``ray.init`` only; afterwards the node's own IP is what Ray asks for."""
    from ray._private import ray_constants

    previous = getattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = previous


def _free_local_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def check_cluster_resources(spec: ExperimentSpec) -> None:
    """One line, before anything starts, when one of the spec's worker groups cannot fit."""
    import ray

    from xit_dist.errors import XitError

    available = ray.cluster_resources()
    need_cpu = spec.distributed.num_workers * spec.distributed.cpus_per_worker
    need_gpu = spec.distributed.num_workers if spec.distributed.use_gpu else 0
    if available.get("CPU", 0) < need_cpu or available.get("GPU", 0) < need_gpu:
        raise XitError(
            f"distributed: the cluster has {available.get('CPU', 0):g} CPU / {available.get('GPU', 0):g} GPU, "
            f"the spec needs {need_cpu:g} CPU / {need_gpu:g} GPU ({spec.distributed.num_workers} workers)"
        )


def connect_cluster(specs: list[ExperimentSpec], output_dir: Path) -> None:
    """Ray up, every distinct worker-group shape of ``specs`` fits the cluster, and ``output_dir``
    is on storage every node reads (a bucket is: it was checked before, ``check_output_dir``)."""
    first = specs[0]
    start_ray(first.distributed.address)
    shapes = {json.dumps(spec.distributed.model_dump(mode="json"), sort_keys=True): spec for spec in specs}
    for spec in shapes.values():
        check_cluster_resources(spec)
    if not in_bucket(first.output_dir):
        check_shared_storage(output_dir, cluster_hosts(), first.distributed.assume_shared_storage)
