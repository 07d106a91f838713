"""Grid scaling: phases to train, and wall time, as a grid grows.

    python benchmarks/grid_scaling.py           # phases counted for 1/3/9 x 1/3/9; 1x1, 1x3, 3x1 run (~10 min)
    python benchmarks/grid_scaling.py --quick   # counts for every size; 1x1 and 1x3 run

Each grid has I intermediate settings (MNLI at I learning rates) x T target settings (XNLI at T
learning rates): I x T cells, each an intermediate phase then a target phase. A cell's
intermediate phase does not depend on the target, so cells that share an intermediate setting
share that phase (same content hash): a grid trains I + I x T phases, not 2 x I x T.

Counted for every size: distinct phases from ``xit_dist.plan.grid.shared_phases`` over the grid's
cells (each cell's plan from ``build_plan``). Measured for the smallest sizes: the grid really
run by ``xit_dist.run.scheduler.run_grid`` (tiny model, 10 steps a phase, 2 workers, one phase at a
time on 2 cores) in a fresh process and output directory: wall time and the phases it trained;
then the same grid again: what it retrained (nothing) and how long that took.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

SIZES = (1, 3, 9)
TRAINING = {
    "epochs": 1, "max_steps": 10, "learning_rate": 1e-3, "batch_size": 16, "max_seq_length": 64, "log_every_n_steps": 5,
}


def grid_tree(intermediates: int, targets: int, output_dir: Path) -> dict:
    """I learning rates for the intermediate stage x T for the target: distinct settings, same tasks."""
    return {
        "grid": f"scale-{intermediates}x{targets}",
        "base": {
            "name": "scale",
            "output_dir": str(output_dir),
            "model": {"name_or_path": "builtin:xlmr-tiny"},
            "data": {"local_dir": "builtin:demo"},
            "intermediate": [{"task": "mnli", "training": dict(TRAINING)}],
            "target": {"task": "xnli", "training": dict(TRAINING)},
            "evaluation": {"split": "test", "languages": ["en", "de"], "max_examples_per_language": 50},
            "distributed": {"num_workers": 2, "cpus_per_worker": 1, "deepspeed_config": "zero2"},
            "tracking": {"uri": f"sqlite:///{output_dir}/mlflow.db", "experiment": "grid-scaling"},
        },
        "axes": {
            "intermediate.0.training.learning_rate": [round(1e-3 * (i + 1), 6) for i in range(intermediates)],
            "target.training.learning_rate": [round(2e-3 * (t + 1), 6) for t in range(targets)],
        },
    }


def write_grid(intermediates: int, targets: int, directory: Path) -> Path:
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"grid-{intermediates}x{targets}.yaml"
    command = f"# xit-dist run {path}  (written by benchmarks/grid_scaling.py)\n"
    path.write_text(command + yaml.safe_dump(grid_tree(intermediates, targets, directory / "out"), sort_keys=False))
    return path


def count(intermediates: int, targets: int, directory: Path) -> dict:
    from xit_dist.plan.grid import load_grid, shared_phases

    grid = load_grid(write_grid(intermediates, targets, directory))
    distinct = shared_phases(grid.cells)
    return {
        "cells": len(grid.cells),
        "phases": len(distinct),
        "intermediate": sum(s.phase.kind == "intermediate" for s in distinct),
        "target": sum(s.phase.kind == "target" for s in distinct),
        "without_sharing": sum(len(cell.phases) for cell in grid.cells),
    }


def child_run(grid_path: str, result: str) -> None:
    """One ``run_grid`` in this process (its own Ray), timed from before the grid is read."""
    started = time.perf_counter()
    from xit_dist.plan.grid import load_grid
    from xit_dist.run.scheduler import run_grid

    log = open(Path(result).with_suffix(".log"), "a")
    summary = run_grid(load_grid(grid_path), out=lambda line: print(line, file=log, flush=True))
    Path(result).write_text(json.dumps({
        "seconds": time.perf_counter() - started,
        "trained": len(summary.trained), "reused": len(summary.reused), "failed": len(summary.failed),
    }))


def run_measured(intermediates: int, targets: int, directory: Path, timeout: float) -> list[dict]:
    """Cold (fresh output directory), then warm (the same grid again)."""
    path = write_grid(intermediates, targets, directory)
    outcomes = []
    for attempt in ("cold", "warm"):
        result = directory / f"{attempt}.json"
        launched = time.time()
        _common.run_child(
            [sys.executable, str(Path(__file__).resolve()), "--child-run", str(path), "--result", str(result)],
            directory / f"{attempt}.stdout", timeout,
        )
        outcome = json.loads(result.read_text())
        outcome.update(attempt=attempt, process_seconds=time.time() - launched)
        if outcome["failed"]:
            raise RuntimeError(f"grid {path}: {outcome['failed']} phase(s) failed; see {result.with_suffix('.log')}")
        outcomes.append(outcome)
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", nargs="*", default=["1x1", "1x3", "3x1"], help="grid sizes to run for real (IxT); none: count only")
    parser.add_argument("--quick", action="store_true", help="run only 1x1 and 1x3")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--timeout", type=float, default=1200)
    parser.add_argument("--child-run", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _common.use_bench_environment()
    if args.child_run:
        child_run(args.child_run, args.result)
        return 0
    if args.quick:
        args.run = ["1x1", "1x3"]
    to_run = [tuple(int(x) for x in size.split("x")) for size in args.run]

    _common.header("grid scaling: phases trained and wall time vs grid size", " ".join(["python", *sys.argv]))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="xit-bench-grid-"))
    rows = []
    counted = {}
    for i in SIZES:
        for t in SIZES:
            c = count(i, t, work / "count" / f"{i}x{t}")
            counted[(i, t)] = c
            rows.append([
                f"{i} x {t}", str(c["cells"]), f"{c['intermediate']} + {c['target']} = {c['phases']}",
                str(c["without_sharing"]), f"{c['phases'] / c['without_sharing']:.2f}",
            ])
    print("phases to train, counted from the grids' plans (I intermediate settings x T targets):")
    print(_common.table(rows, ["I x T", "cells", "distinct phases (intermediate + target)", "2 x cells (no sharing)", "ratio"]))
    print(flush=True)

    measured_rows = []
    with _common.LoadMonitor() as load:
        for i, t in to_run:
            cold, warm = run_measured(i, t, work / "run" / f"{i}x{t}", args.timeout)
            print(f"ran {i}x{t}: cold {cold['seconds']:.0f}s trained {cold['trained']}; warm {warm['seconds']:.0f}s trained {warm['trained']}", flush=True)
            measured_rows.append([
                f"{i} x {t}", str(counted[(i, t)]["phases"]), str(cold["trained"]), f"{cold['seconds']:.0f}",
                f"{cold['seconds'] / max(cold['trained'], 1):.0f}", str(warm["trained"]), str(warm["reused"]), f"{warm['seconds']:.0f}",
            ])
    print()
    print("run for real with xit_dist.run.scheduler.run_grid (tiny model, 10 steps a phase; seconds from reading the grid to its end):")
    print(_common.table(measured_rows, [
        "I x T", "phases counted", "cold: trained", "cold: s", "s per phase", "warm: trained", "warm: reused", "warm: s",
    ]))
    print(load.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
