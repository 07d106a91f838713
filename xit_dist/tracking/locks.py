"""File locks that several drivers of one ``output_dir`` share: one trainer per phase directory
(``phase_lock``), and one writer at a time finding or creating MLflow runs (``exclusive``),
across processes and nodes.

Two drivers may need the same phase at once: two ``xit-dist run`` of grids that share an
intermediate phase, or the same grid started twice on one ``output_dir``. Without a lock both
would train it into the same directory and the Ray run of one would resume from the other's
checkpoints. The lock is ``flock`` on a file in the phase directory (on a shared filesystem the
kernel's NFS client maps it onto NFS locks, so it holds across nodes); whoever gets it second
waits, then finds the phase done and reuses it. The lock file names its holder for the message
the waiter prints. A killed holder's lock goes with its process: nothing stale is left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

LOCK_FILE = ".train.lock"


def holder_of(phase_dir: Path) -> str:
    """Who holds (or last held) the lock, as the lock file says: 'pid P on HOST since T'."""
    try:
        info = json.loads((phase_dir / LOCK_FILE).read_text())
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError):
        return "another process"


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """A short critical section across processes (and nodes, on NFS): ``flock`` on
    ``lock_file``, waited for. MLflow runs are found or created under it, so that two drivers of
    one spec find one run instead of each creating its own."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def phase_lock(phase_dir: Path, phase_id: str, say: Callable[[str], None]) -> Iterator[None]:
    """Hold the phase's lock for the block; if another process holds it, say so once and wait."""
    phase_dir.mkdir(parents=True, exist_ok=True)
    with open(phase_dir / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"   phase {phase_id} is being trained by {holder_of(phase_dir)} ({phase_dir}): waiting for it")
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
