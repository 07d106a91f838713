"""Two processes that need the same phase: the second waits for the first and reuses its
phase instead of training it again into the same directory (xit_dist/tracking/locks.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

from xit_dist.train.phase import DONE_FILE, run_phase
from xit_dist.tracking.locks import LOCK_FILE

# Another driver training the phase: takes the lock, says so, trains (sleeps), writes phase.json, exits.
HOLDER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from xit_dist.tracking.locks import phase_lock
    phase_dir = Path(sys.argv[1])
    with phase_lock(phase_dir, "p", print):
        (phase_dir / "holding").touch()
        time.sleep(float(sys.argv[2]))
        (phase_dir / "encoder").mkdir()
        (phase_dir / "phase.json").write_text(json.dumps({"trained_by": "holder"}))
    """
)


def start_holder(phase_dir: Path, seconds: float) -> subprocess.Popen:
    """The other driver, once it holds the phase's lock."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(phase_dir), str(seconds)], cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 60
    while not (phase_dir / "holding").exists():
        assert holder.poll() is None and time.monotonic() < deadline, "the holder never took the lock"
        time.sleep(0.05)
    return holder


def test_second_driver_waits_then_reuses_the_phase_without_training(tmp_path):
    phase_dir = tmp_path / "phases" / "p"
    holder = start_holder(phase_dir, 3)
    messages: list[str] = []
    import xit_dist.train.phase as phase

    original, phase.say = phase.say, messages.append
    try:
        started = time.monotonic()
        # resources=None: reaching the training code (Ray) instead of reusing would fail loudly.
        outcome = run_phase(SimpleNamespace(phase_id="p"), "encoder", phase_dir, resources=None)
        waited = time.monotonic() - started
    finally:
        phase.say = original
    assert holder.wait(timeout=60) == 0
    assert outcome.reused and outcome.record == {"trained_by": "holder"} and outcome.output_dir == phase_dir / "encoder"
    assert waited > 1.0  # it really waited for the holder's "training"
    assert len(messages) == 1 and f"phase p is being trained by pid {holder.pid} on " in messages[0] and "waiting for it" in messages[0]
    assert json.loads((phase_dir / LOCK_FILE).read_text())["pid"] != holder.pid  # the lock file now names its new holder


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    phase_dir = tmp_path / "p"
    holder = start_holder(phase_dir, 600)
    holder.kill()
    holder.wait()
    assert not (phase_dir / DONE_FILE).exists()
    from xit_dist.tracking.locks import phase_lock

    said: list[str] = []
    with phase_lock(phase_dir, "p", said.append):  # taken at once: the lock went with the process
        pass
    assert said == []
