"""The phase lock for an ``output_dir`` in an object store (``s3://bucket/prefix``), where there
is no ``flock``: a lease, one small JSON object per phase (``<phase>/.train.lease``) that names
its holder (holder id, host, pid, acquired, renewed, expires).

It rests on S3's conditional writes, all made with boto3:

- taken: ``PutObject`` with ``If-None-Match: *``, which only one of any number of racing drivers
  gets (the others get 412 Precondition Failed);
- kept: a thread rewrites it every ttl/3 with ``If-Match: <our last ETag>`` (compare-and-swap);
  each write has a fresh ``seq`` and time in it, so its ETag (the body's MD5) is new each time;
- given back: ``DeleteObject`` with ``If-Match: <our last ETag>``, so a driver whose lease was
  taken over never deletes the new holder's;
- taken over, when its holder is gone: a waiter that sees the same ETag for longer than the
  lease's ttl (on its own monotonic clock: no trust in the clocks of other nodes) rewrites it with
  ``If-Match: <that ETag>``, so of two waiters only one gets it.

A holder that cannot renew for a whole ttl (killed, partitioned, paused) loses the lease. Its work
cannot be stopped from here: ``lease.lost`` is set, and leaving the block raises ``LeaseLost``.
A lease is not a fencing token: a holder paused past its ttl may still write until its renewal
thread notices, at most one renewal interval later.

Whether the store honours the conditions is probed once per endpoint and bucket, before the first
lease is taken (``ensure_conditional_writes``). A store that ignores them would let two drivers
each overwrite the other's lease and both train the phase, which is what the lease is for: such a
store raises ``LeaseUnsupported`` (naming what failed) rather than giving a warning nobody reads
while two trainings corrupt one phase's checkpoints. SeaweedFS 4.48 honours all of them, also
under contention (tests/test_object_lease.py), though it makes racing writes to one key wait about
a second each. Credentials and the endpoint are boto3's usual ones (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

LEASE_FILE = ".train.lease"
DEFAULT_TTL_S = 60.0
# 412: the condition did not hold; 409 ConditionalRequestConflict: AWS S3's answer to a
# conditional write racing another one on the same key (to be retried after a fresh read).
REFUSED = {"412", "409", "PreconditionFailed", "ConditionalRequestConflict"}
MISSING = {"404", "NoSuchKey", "NotFound"}


class LeaseUnsupported(RuntimeError):
    """The object store ignores the conditional writes a lease needs."""


class LeaseLost(RuntimeError):
    """The lease was taken over, or not renewed for a whole ttl, while its holder worked."""


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix``)."""
    if not uri.startswith("s3://") or not uri[5:].split("/", 1)[0]:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[5:].partition("/")
    return bucket, prefix.strip("/")


def s3_client(ttl_s: float = DEFAULT_TTL_S) -> Any:
    """A client from the standard AWS environment; a session of its own (creating clients on
    boto3's default session is not thread-safe), and timeouts short enough for renewals to be
    retried within a ttl."""
    timeout = max(1.0, min(10.0, ttl_s / 4))
    config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"mode": "standard", "max_attempts": 3})
    return boto3.session.Session().client("s3", config=config)


def _code(error: ClientError) -> set[str]:
    response = error.response
    return {str(response.get("Error", {}).get("Code")), str(response.get("ResponseMetadata", {}).get("HTTPStatusCode"))}


def _stamp(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


@dataclass(frozen=True)
class Seen:
    """The lease as read: its ETag, raw body and parsed content (empty if not ours to parse)."""

    etag: str
    body: bytes
    info: dict

    def describe(self) -> str:
        """Its holder as 'pid P on HOST since T', as phase_lock names the holder of a file lock."""
        info = self.info
        if {"pid", "host", "acquired"} <= info.keys():
            return f"pid {info['pid']} on {info['host']} since {info['acquired']}"
        return "another process"


class ObjectLease:
    """One driver's claim on one lease object: the conditional writes, without the waiting and
    the renewal thread (``phase_lease`` adds those)."""

    def __init__(self, client: Any, bucket: str, key: str, ttl_s: float = DEFAULT_TTL_S):
        self.client, self.bucket, self.key, self.ttl_s = client, bucket, key, ttl_s
        self.holder = uuid.uuid4().hex
        self.etag: str | None = None  # of our last write, while we hold it
        self.valid_until = 0.0  # monotonic: when a waiter may take it over, at the earliest
        self.lost = threading.Event()
        self._seq = 0
        self._acquired: float | None = None

    def read(self) -> Seen | None:
        """The lease as it is now, or None if there is none."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as error:
            if _code(error) & MISSING:
                return None
            raise
        body = response["Body"].read()
        try:
            info = json.loads(body)
        except ValueError:
            info = {}
        return Seen(response["ETag"], body, info if isinstance(info, dict) else {})

    def _body(self, now: float) -> bytes:
        self._seq += 1
        return json.dumps({
            "holder": self.holder, "host": socket.gethostname(), "pid": os.getpid(), "acquired": _stamp(self._acquired or now),
            "renewed": _stamp(now), "expires": _stamp(now + self.ttl_s), "ttl_s": self.ttl_s, "seq": self._seq,
        }).encode()

    def _put(self, **condition: str) -> bool:
        """One conditional write of a fresh body; True if the lease is now ours. A refusal whose
        object is our own body is a success: the write landed, its answer was lost, and boto3's
        retry of it was refused."""
        started, now = time.monotonic(), time.time()
        body = self._body(now)
        try:
            etag = self.client.put_object(Bucket=self.bucket, Key=self.key, Body=body, ContentType="application/json", **condition)["ETag"]
        except ClientError as error:
            if not _code(error) & REFUSED:
                raise
            current = self.read()
            if current is None or current.body != body:
                return False
            etag = current.etag
        self.etag, self.valid_until = etag, started + self.ttl_s
        self._acquired = self._acquired or now
        return True

    def try_acquire(self) -> bool:
        """Create the lease if there is none (If-None-Match: *)."""
        return self._put(IfNoneMatch="*")

    def take_over(self, etag: str) -> bool:
        """Replace an expired lease, only if it is still the one seen (If-Match: its ETag)."""
        return self._put(IfMatch=etag)

    def renew(self) -> bool:
        """Rewrite our lease (If-Match: our last ETag); False if it is no longer ours. A refused
        write that left our lease in place (a 409 conflict) is not a loss."""
        if self.etag is None:
            return False
        if self._put(IfMatch=self.etag):
            return True
        current = self.read()
        return current is not None and current.etag == self.etag

    def release(self) -> bool:
        """Delete the lease if it is still ours (If-Match: our last ETag); False if it was not."""
        if self.etag is None:
            return False
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=self.etag)
        except ClientError as error:
            if _code(error) & (REFUSED | MISSING):
                return False
            raise
        finally:
            self.etag = None
        return True


def _outcome(call: Callable[[], Any]) -> str:
    """'accepted', 'refused' (412/409), or the store's error code for one conditional request."""
    try:
        call()
    except ClientError as error:
        codes = _code(error)
        return "refused" if codes & REFUSED else "/".join(sorted(codes))
    return "accepted"


def probe_conditional_writes(client: Any, bucket: str, key: str) -> list[str]:
    """What the store gets wrong of the conditions a lease needs, tried on a scratch object
    ``key`` (deleted after): an empty list if it honours them all."""
    put = client.put_object
    problems = []
    first = _outcome(lambda: put(Bucket=bucket, Key=key, Body=b"probe 1", IfNoneMatch="*"))
    if first != "accepted":
        return [f"PutObject with If-None-Match: * on a new key was {first}"]
    try:
        stale = client.head_object(Bucket=bucket, Key=key)["ETag"]
        expected = {
            "PutObject with If-Match: <current ETag>": (lambda: put(Bucket=bucket, Key=key, Body=b"probe 2", IfMatch=stale), "accepted"),
            "PutObject with If-Match: <stale ETag>": (lambda: put(Bucket=bucket, Key=key, Body=b"probe 3", IfMatch=stale), "refused"),
            "DeleteObject with If-Match: <stale ETag>": (lambda: client.delete_object(Bucket=bucket, Key=key, IfMatch=stale), "refused"),
            "PutObject with If-None-Match: * on an existing key": (lambda: put(Bucket=bucket, Key=key, Body=b"probe 4", IfNoneMatch="*"), "refused"),
        }
        for what, (call, wanted) in expected.items():  # in this order: each relies on the one before
            got = _outcome(call)
            if got != wanted:
                problems.append(f"{what} was {got}, not {wanted}")
    finally:
        client.delete_object(Bucket=bucket, Key=key)
    return problems


_PROBED: set[tuple[str, str]] = set()
_PROBE_LOCK = threading.Lock()


def ensure_conditional_writes(client: Any, bucket: str, prefix: str) -> None:
    """Probe the store once per endpoint and bucket; raise LeaseUnsupported if it ignores the
    conditions (a lease there would not exclude anyone)."""
    where = (str(client.meta.endpoint_url), bucket)
    with _PROBE_LOCK:
        if where in _PROBED:
            return
        scratch = f"{prefix}/.lease-probe-{uuid.uuid4().hex}".lstrip("/")
        problems = probe_conditional_writes(client, bucket, scratch)
        if problems:
            raise LeaseUnsupported(
                f"the object store at {where[0]} (bucket {bucket}) does not honour S3's conditional writes: {'; '.join(problems)}. "
                "A phase lease there would not keep two drivers from training the same phase: use a store that does "
                "(AWS S3, or SeaweedFS as tested), or an output_dir on a shared filesystem (flock)"
            )
        _PROBED.add(where)


class _Renewer(threading.Thread):
    """Renews the lease every ttl/3 until stopped; sets ``lease.lost`` (and stops) when the lease
    was taken over, or not renewed for a whole ttl."""

    def __init__(self, lease: ObjectLease, say: Callable[[str], None], phase_id: str):
        super().__init__(name=f"lease-renewer-{phase_id}", daemon=True)
        self.lease, self.say, self.phase_id = lease, say, phase_id
        self.stopped = threading.Event()

    def run(self) -> None:
        lease = self.lease
        while not self.stopped.wait(lease.ttl_s / 3):
            try:
                still_ours = lease.renew()
            except (BotoCoreError, ClientError):
                still_ours = True  # a transient failure: the deadline below decides
            if not still_ours or time.monotonic() > lease.valid_until:
                lease.lost.set()
                why = "taken over by another driver" if not still_ours else f"not renewed for {lease.ttl_s:g} s"
                self.say(f"   phase {self.phase_id}: lost its lease ({why})")
                return

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def _ttl_of(seen: Seen, default: float) -> float:
    """The ttl the holder wrote into its lease (the default if it wrote none we can read)."""
    try:
        return float(seen.info["ttl_s"])
    except (KeyError, TypeError, ValueError):
        return default


def holder_died_here(seen: Seen) -> bool:
    """Whether the lease names a process of this host that no longer runs (a driver killed and
    started again on the same machine need not wait out the ttl). Hosts are told apart by their
    name, as the lease records it."""
    info = seen.info
    if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int) or info["pid"] == os.getpid():
        return False
    try:
        os.kill(info["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def wait_for(lease: ObjectLease, phase_id: str, where: str, say: Callable[[str], None], poll_s: float) -> None:
    """Until the lease is ours: created when there is none, taken over when the same ETag has
    stood (as this driver sees it) for longer than the ttl its holder wrote into it."""
    if lease.try_acquire():
        return
    said, watched = False, None  # watched: (ETag, monotonic time it was first seen)
    while True:
        current = lease.read()
        if current is None:
            if lease.try_acquire():
                return
        elif holder_died_here(current):
            say(f"   phase {phase_id}: the lease of {current.describe()} is held by a process of this host that is gone: taking it over")
            if lease.take_over(current.etag):
                return
        elif watched is None or watched[0] != current.etag:
            watched = (current.etag, time.monotonic())
            if not said:
                say(f"   phase {phase_id} is being trained by {current.describe()} ({where}): waiting for it")
                said = True
        elif time.monotonic() - watched[1] > _ttl_of(current, lease.ttl_s):
            say(f"   phase {phase_id}: the lease of {current.describe()} was not renewed in time: taking it over")
            if lease.take_over(current.etag):
                return
            watched = None
        time.sleep(poll_s)


@contextlib.contextmanager
def phase_lease(
    phase_uri: str, phase_id: str, say: Callable[[str], None], *, ttl_s: float = DEFAULT_TTL_S, poll_s: float = 2.0, client: Any = None
) -> Iterator[ObjectLease]:
    """Hold the phase's lease (``<phase_uri>/.train.lease``) for the block, renewed meanwhile;
    if another driver holds it, say so once and wait. Leaving the block gives it back; if it was
    lost meanwhile, leaving raises LeaseLost (the block's own exception, if any, wins)."""
    bucket, prefix = split_s3_uri(phase_uri)
    client = client if client is not None else s3_client(ttl_s)
    ensure_conditional_writes(client, bucket, prefix)
    lease = ObjectLease(client, bucket, f"{prefix}/{LEASE_FILE}".lstrip("/"), ttl_s)
    wait_for(lease, phase_id, phase_uri, say, poll_s)
    renewer = _Renewer(lease, say, phase_id)
    renewer.start()
    try:
        yield lease
    finally:
        renewer.stop()
        lease.release()
    if lease.lost.is_set():
        raise LeaseLost(f"phase {phase_id}: the lease on {phase_uri} was lost while held: another driver may have trained it too")
