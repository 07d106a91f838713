"""The phase lease for an output_dir in an object store (xit_dist/tracking/lease.py), against a
real S3 server (SeaweedFS, tests/s3_server.py): one holder at a time, waiting, renewal, takeover
of a dead holder's lease, conditional release, and the conditional writes it rests on."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.s3_server import seaweedfs_in_aws_environment
from xit_dist.tracking.lease import (
    LEASE_FILE,
    LeaseLost,
    LeaseUnsupported,
    ObjectLease,
    ensure_conditional_writes,
    phase_lease,
    probe_conditional_writes,
    s3_client,
)

# A waiter that never gets its lease would wait forever: fail instead.
pytestmark = pytest.mark.timeout(120)

BUCKET = "xit-lease-tests"
REPO = Path(__file__).resolve().parents[1]

# Another driver: takes the phase's lease, says it holds it, works (sleeps), leaves a marker, gives it back.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from xit_dist.tracking.lease import phase_lease
    uri, seconds, ttl, marker = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
    with phase_lease(uri, "p", print, ttl_s=ttl, poll_s=0.1):
        print("holding", flush=True)
        time.sleep(seconds)
        open(marker, "w").write("done")
    """
)


@pytest.fixture(scope="module")
def s3():
    """One SeaweedFS for the module, its credentials and endpoint in the standard AWS environment
    (which the lease's client reads, and the holder processes inherit)."""
    with seaweedfs_in_aws_environment(BUCKET):
        yield s3_client()


@pytest.fixture
def phase_uri(s3):
    """A fresh phase of a fresh output_dir in the bucket."""
    return f"s3://{BUCKET}/run-{uuid.uuid4().hex[:8]}/phases/p"


def lease_key(uri: str) -> str:
    return uri.split("/", 3)[3] + "/" + LEASE_FILE


def lease_info(s3, uri: str) -> dict | None:
    try:
        return json.loads(s3.get_object(Bucket=BUCKET, Key=lease_key(uri))["Body"].read())
    except ClientError:
        return None


def lease_info_since(waiting_line: str) -> str:
    """The holder's "since", as the waiting line names it."""
    return waiting_line.split(" since ", 1)[1].split(" (", 1)[0]


def start_holder(uri: str, seconds: float, ttl: float, marker: Path) -> subprocess.Popen:
    """The other driver, once it holds the lease."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, uri, str(seconds), str(ttl), str(marker)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "holding", "the holder never took the lease"
    return holder


def test_seaweedfs_honours_the_conditional_writes(s3):
    assert probe_conditional_writes(s3, BUCKET, f"probe-{uuid.uuid4().hex}") == []
    key = f"raw-{uuid.uuid4().hex}"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"one", IfNoneMatch="*")
    with pytest.raises(ClientError) as second:
        s3.put_object(Bucket=BUCKET, Key=key, Body=b"two", IfNoneMatch="*")
    assert second.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"one"


class IgnoresConditions:
    """A store that accepts every write whatever its conditions (what the probe must catch)."""

    def __init__(self):
        self.meta = SimpleNamespace(endpoint_url="http://ignores-conditions.invalid")
        self.objects: dict[str, bytes] = {}

    def put_object(self, Bucket, Key, Body, **conditions):
        self.objects[Key] = Body
        return {"ETag": f'"{hash(Body)}"'}

    def head_object(self, Bucket, Key):
        return {"ETag": f'"{hash(self.objects[Key])}"'}

    def delete_object(self, Bucket, Key, **conditions):
        self.objects.pop(Key, None)


def test_a_store_that_ignores_the_conditions_is_refused():
    store = IgnoresConditions()
    with pytest.raises(LeaseUnsupported, match="If-None-Match: \\* on an existing key was accepted, not refused"):
        ensure_conditional_writes(store, BUCKET, "out/phases/p")
    assert store.objects == {}  # the probe's scratch object is gone


def test_second_driver_waits_for_the_holder_to_give_it_back(s3, phase_uri, tmp_path):
    marker = tmp_path / "done"
    holder = start_holder(phase_uri, 1.5, 1.5, marker)
    said: list[str] = []
    started = time.monotonic()
    with phase_lease(phase_uri, "p", said.append, poll_s=0.1) as lease:
        waited = time.monotonic() - started
        assert marker.exists()  # the holder finished its work before this driver got the lease
        assert lease_info(s3, phase_uri)["holder"] == lease.holder
    assert holder.wait(timeout=30) == 0
    assert waited > 1.0
    assert len(said) == 1 and f"phase p is being trained by pid {holder.pid} on {socket.gethostname()} since " in said[0]
    assert said[0].endswith(f"({phase_uri}): waiting for it")
    assert lease_info(s3, phase_uri) is None  # given back


def test_a_dead_holders_lease_is_taken_over_once_its_ttl_has_passed(s3, phase_uri, tmp_path):
    """A holder on another node (its host rewritten into the lease it left): only the ttl tells."""
    holder = start_holder(phase_uri, 600, 1.0, tmp_path / "done")
    holder.kill()
    holder.wait()
    left = lease_info(s3, phase_uri)
    assert left["pid"] == holder.pid  # left behind: nobody deletes it
    s3.put_object(Bucket=BUCKET, Key=lease_key(phase_uri), Body=json.dumps({**left, "host": "another-node"}).encode())
    said: list[str] = []
    started = time.monotonic()
    with phase_lease(phase_uri, "p", said.append, poll_s=0.1) as lease:
        waited = time.monotonic() - started
        assert lease_info(s3, phase_uri)["holder"] == lease.holder
    assert 1.0 < waited < 10
    assert len(said) == 2 and "waiting for it" in said[0]
    assert said[1] == f"   phase p: the lease of pid {holder.pid} on another-node since {lease_info_since(said[0])} was not renewed in time: taking it over"


def test_a_lease_of_a_dead_process_of_this_host_is_taken_over_at_once(s3, phase_uri, tmp_path):
    """A driver killed and started again on the same machine does not wait out the ttl."""
    holder = start_holder(phase_uri, 600, 60.0, tmp_path / "done")
    holder.kill()
    holder.wait()
    said: list[str] = []
    started = time.monotonic()
    with phase_lease(phase_uri, "p", said.append, poll_s=0.1) as lease:
        waited = time.monotonic() - started
        assert lease_info(s3, phase_uri)["holder"] == lease.holder
    assert waited < 10
    assert said == [f"   phase p: the lease of pid {holder.pid} on {socket.gethostname()} since {left_since(said[0])} "
                    "is held by a process of this host that is gone: taking it over"]


def left_since(line: str) -> str:
    return line.split(" since ", 1)[1].split(" is held", 1)[0]


def test_renewal_keeps_the_lease_past_its_first_expiry(s3, phase_uri):
    holding, leaving = threading.Event(), threading.Event()
    seen: dict = {}

    def hold():
        with phase_lease(phase_uri, "p", print, ttl_s=1.5, poll_s=0.1) as lease:
            holding.set()
            time.sleep(4.5)  # 3 ttls
            seen.update(lease_info(s3, phase_uri), lost=lease.lost.is_set())
            leaving.set()

    holder = threading.Thread(target=hold)
    holder.start()
    assert holding.wait(30)
    said: list[str] = []
    with phase_lease(phase_uri, "p", said.append, poll_s=0.1):
        assert leaving.is_set()  # not taken over while renewed
    holder.join()
    assert not seen["lost"] and seen["seq"] >= 5  # rewritten every ttl/3
    assert len(said) == 1 and "waiting for it" in said[0]


def test_a_former_holder_does_not_delete_the_new_holders_lease(s3, phase_uri):
    bucket, key = BUCKET, lease_key(phase_uri)
    paused = ObjectLease(s3, bucket, key, ttl_s=0.5)  # holds it, then renews no more (paused, partitioned)
    assert paused.try_acquire()
    never_held = ObjectLease(s3, bucket, key)
    with phase_lease(phase_uri, "p", lambda line: None, poll_s=0.05) as lease:
        assert not paused.renew() and not paused.release() and not never_held.release()
        assert lease_info(s3, phase_uri)["holder"] == lease.holder
    assert lease_info(s3, phase_uri) is None


def test_a_holder_whose_lease_was_replaced_leaves_it_and_raises(s3, phase_uri):
    said: list[str] = []
    foreign = json.dumps({"holder": "someone else", "pid": 1, "host": "elsewhere", "acquired": "then"}).encode()
    with pytest.raises(LeaseLost, match="lost while held"):
        with phase_lease(phase_uri, "p", said.append, ttl_s=0.6) as lease:
            s3.put_object(Bucket=BUCKET, Key=lease_key(phase_uri), Body=foreign)  # not through a lease: an intruder
            deadline = time.monotonic() + 10
            while not lease.lost.is_set() and time.monotonic() < deadline:
                time.sleep(0.05)
    # "taken over" when its next renewal is refused; "not renewed" when that renewal, racing the
    # intruder's write, got no answer before the ttl ran out: a lost lease either way
    assert len(said) == 1 and said[0].startswith("   phase p: lost its lease (")
    assert lease_info(s3, phase_uri)["holder"] == "someone else"


def race(calls: list) -> list:
    """Run the calls at once (one thread each, released together); their results, in order."""
    results: list = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i):
        start.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("round_", range(2))
def test_of_racing_drivers_exactly_one_creates_and_one_takes_over(s3, round_):
    clients = [boto3.session.Session().client("s3") for _ in range(6)]
    key = f"race-{uuid.uuid4().hex}/{LEASE_FILE}"
    leases = [ObjectLease(client, BUCKET, key, ttl_s=0.1) for client in clients]
    won = race([lease.try_acquire for lease in leases])
    assert won.count(True) == 1
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())["holder"] == leases[won.index(True)].holder
    stale = s3.head_object(Bucket=BUCKET, Key=key)["ETag"]
    takers = [ObjectLease(client, BUCKET, key) for client in clients]
    took = race([lambda taker=taker: taker.take_over(stale) for taker in takers])
    assert took.count(True) == 1
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())["holder"] == takers[took.index(True)].holder


# Another driver training a phase in the bucket: holds its lease, "trains", uploads the record, gives it back.
TRAINER = textwrap.dedent(
    """
    import json, sys, time
    from xit_dist.tracking.lease import phase_lease
    from xit_dist.tracking.object_files import write_text
    uri, seconds = sys.argv[1], float(sys.argv[2])
    with phase_lease(uri, "p", print, poll_s=0.1):
        print("holding", flush=True)
        time.sleep(seconds)
        write_text(uri + "/encoder/config.json", "{}")
        write_text(uri + "/phase.json", json.dumps({"trained_by": "holder"}))
    """
)


def test_a_phase_in_a_bucket_is_trained_by_one_driver_and_reused_by_the_other(s3, phase_uri, monkeypatch, tmp_path):
    """run_phase on a bucket's phase (its directory is this node's mirror of it): the lease held
    by another driver makes it wait, then it finds the record in the bucket and reuses the phase."""
    import xit_dist.train.phase as phase
    from xit_dist.tracking.object_files import mirror_path

    monkeypatch.setenv("XIT_DIST_CACHE", str(tmp_path / "cache"))
    holder = subprocess.Popen([sys.executable, "-c", TRAINER, phase_uri, "3"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    messages: list[str] = []
    monkeypatch.setattr(phase, "say", messages.append)
    started = time.monotonic()
    # resources=None: reaching the training code (Ray) instead of reusing would fail loudly.
    outcome = phase.run_phase(SimpleNamespace(phase_id="p"), "encoder", mirror_path(phase_uri), resources=None)
    waited = time.monotonic() - started
    assert holder.wait(timeout=60) == 0
    assert outcome.reused and outcome.record == {"trained_by": "holder"}
    assert outcome.output_dir == tmp_path / "cache" / "outputs" / "s3" / phase_uri.removeprefix("s3://") / "encoder"
    assert waited > 1.0 and len(messages) == 1 and "phase p is being trained by pid" in messages[0], messages
    assert lease_info(s3, phase_uri) is None  # given back
