"""A tiny grid on the built-in model and demo data, and a driver that is killed mid-grid:
shared by tests/test_grid.py and tests/test_report.py through the ``finished_grid`` fixture
(tests/conftest.py), so the grid is trained once per test session."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

TINY_TRAINING = {"epochs": 1, "max_steps": 20, "learning_rate": 2.0e-3, "batch_size": 16, "max_seq_length": 48, "log_every_n_steps": 5}
# Long enough for the tiny model to leave its plateau on the demo's MNLI (tests/conftest.py,
# SMALL_TRAINING): the MNLI encoder then lifts XNLI and PAWS-X well above what 20 target steps
# from the pretrained model reach, so the report's deltas are not all zero.
LEARNING_MNLI = {"task": "mnli", "training": {"max_steps": 90, "batch_size": 32, "max_seq_length": 64, "warmup_ratio": 0.1, "weight_decay": 0.01}}


def tiny_grid_tree(output_dir: Path, *, name: str, intermediate: list | dict, targets: list, seeds: list[int], experiment: str) -> dict:
    """One worker per phase, so that two phases fit the 2-CPU test cluster at once."""
    return {
        "grid": name,
        "base": {
            "output_dir": str(output_dir),
            "model": {"name_or_path": "builtin:xlmr-tiny"},
            "data": {"local_dir": "builtin:demo"},
            "target": {"task": targets[0]},
            "evaluation": {"split": "test", "languages": ["en", "de"], "batch_size": 64, "max_examples_per_language": 60},
            "distributed": {"num_workers": 1, "cpus_per_worker": 1, "deepspeed_config": "zero2"},
            "tracking": {"experiment": experiment},
        },
        "training": TINY_TRAINING,
        "axes": {"intermediate": intermediate, "target": targets, "seed": seeds},
    }


def write_grid(path: Path, tree: dict) -> Path:
    path.write_text(f"# xit-dist run {path}\n" + yaml.safe_dump(tree, sort_keys=False))
    return path


def done_phases(output_dir: Path) -> dict[str, int]:
    """phase id -> mtime (ns) of its phase.json."""
    return {p.parent.name: p.stat().st_mtime_ns for p in (output_dir / "phases").glob("*/phase.json")}


def run_cli_and_kill_after_first_phase(grid_path: Path, output_dir: Path, log_path: Path, timeout: float = 900) -> dict[str, int]:
    """``xit-dist run GRID`` as its own process (and its own local Ray, in its process group);
    SIGKILL the whole group as soon as one phase is done. Returns the phases done by then."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "xit_dist.cli", "run", str(grid_path)], stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while not done_phases(output_dir):
                if proc.poll() is not None:
                    raise AssertionError(f"grid run exited ({proc.returncode}) before its first phase:\n{log_path.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"no phase done within {timeout:.0f}s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return done_phases(output_dir)


@dataclass
class FinishedGrid:
    path: Path
    output_dir: Path
    done_at_kill: dict[str, int]   # phases the killed driver had finished (id -> phase.json mtime)
    rerun: object                  # GridSummary of the rerun that finished the grid
    rerun_seconds: float
    first_seconds: float


def interrupted_then_finished(directory: Path) -> FinishedGrid:
    """The grid's first driver is killed after its first phase; the rerun (in this process, on
    the session's Ray) finishes it."""
    from xit_dist.plan.grid import load_grid
    from xit_dist.run.scheduler import run_grid

    output_dir = directory / "out"
    intermediate = {"none": [], "mnli": [LEARNING_MNLI]}
    tree = tiny_grid_tree(output_dir, name="tiny", intermediate=intermediate, targets=["xnli", "pawsx"], seeds=[0], experiment="grid-tests")
    path = write_grid(directory / "grid.yaml", tree)
    start = time.monotonic()
    done = run_cli_and_kill_after_first_phase(path, output_dir, directory / "killed_driver.log")
    first_seconds = time.monotonic() - start
    start = time.monotonic()
    summary = run_grid(load_grid(path))
    return FinishedGrid(path, output_dir, done, summary, time.monotonic() - start, first_seconds)
