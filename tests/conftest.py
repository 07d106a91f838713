"""Shared fixtures: offline settings, one local Ray cluster for the whole session, and small
specs on the built-in tiny model and synthetic benchmark."""

from __future__ import annotations

import copy
import os

import pytest

from xit_dist.train.toolchain import interpreter_bin_first

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Ray Train's controller polls its workers every 2 s by default; a Ray run ends (and a worker's
# next checkpoint report gets through) only at a poll. The suite's phases last seconds, so the
# default wait is a large share of each; the drivers and CLI processes the tests start inherit this.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.25")
# Two helpers Ray Train starts with every run that no test uses: the preemption watcher (an actor
# process per run, for spot nodes being drained) and its Prometheus metrics. Off, a phase's
# start-up on two cores is ~1.5 s shorter (14.6 s -> 13.2 s per fit; BENCHMARKS.md section 1).
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
os.environ.setdefault("RAY_TRAIN_METRICS_ENABLED", "0")
# DeepSpeed engines built in this process (tests/test_checkpoint_integrity.py) compile their ops
# with the same ninja as the Ray workers do; another one would rebuild the cached op for both.
interpreter_bin_first()


@pytest.fixture(scope="session")
def finished_grid(ray_cluster, tmp_path_factory):
    """A tiny grid whose first driver was killed after one phase, rerun to the end (shared by
    tests/test_grid.py and tests/test_report.py: trained once per session)."""
    from tests.grid_fixtures import interrupted_then_finished

    return interrupted_then_finished(tmp_path_factory.mktemp("grid"))


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster, started once (each start costs seconds and memory)."""
    import ray

    from xit_dist.run.ray_cluster import start_ray

    start_ray(None)
    yield ray
    ray.shutdown()


# Enough steps for the tiny model to leave its plateau on the synthetic data (the demo's
# loss starts falling after ~80 steps at lr 1e-3; a higher rate gets there sooner).
SMALL_TRAINING = {
    "epochs": 1,
    "max_steps": 90,
    "learning_rate": 2.0e-3,
    "batch_size": 32,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "max_seq_length": 64,
    "log_every_n_steps": 10,
}


def small_spec_tree(output_dir, *, intermediate=("mnli",), target="xnli", deepspeed="zero2", name="t") -> dict:
    return {
        "name": name,
        "seed": 0,
        "output_dir": str(output_dir),
        "model": {"name_or_path": "builtin:xlmr-tiny"},
        "data": {"local_dir": "builtin:demo"},
        "intermediate": [{"task": task, "training": copy.deepcopy(SMALL_TRAINING)} for task in intermediate],
        "target": {"task": target, "training": copy.deepcopy(SMALL_TRAINING)},
        "evaluation": {"split": "test", "languages": ["en", "de", "zh"], "batch_size": 64},
        "distributed": {"num_workers": 2, "cpus_per_worker": 1, "deepspeed_config": deepspeed},
        "tracking": {"experiment": "tests"},
    }
