"""A phase's checkpoints on the worker side: what each rank writes (DeepSpeed shards, RNG state,
rank 0's progress record, the manifest), how they reach Ray, and how a restarted worker group
picks an intact one and resumes from it bit for bit."""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_TAG = "ds"           # DeepSpeed's tag: files live in <checkpoint>/ds/
PROGRESS_FILE = "progress.json"  # rank 0's record of where training stood


def rng_state() -> dict[str, Any]:
    import random

    import numpy as np

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_and_report(engine, metrics: dict[str, Any], progress: dict[str, Any], rank: int) -> None:
    """Every rank writes its DeepSpeed shards, RNG state and manifest; Ray merges the ranks'
    directories into one checkpoint in storage."""
    import ray.train

    with tempfile.TemporaryDirectory(prefix="xit-ckpt-") as tmp:
        write_checkpoint(engine, Path(tmp), progress, rank)
        ray.train.report(
            metrics,
            checkpoint=ray.train.Checkpoint.from_directory(tmp),
            checkpoint_dir_name=checkpoint_name(progress),
        )


def write_checkpoint(engine, directory: Path, progress: dict[str, Any], rank: int) -> None:
    """This rank's part of a checkpoint, its manifest (content hashes) last."""
    from xit_dist.train.checkpoint_manifest import write_manifest

    engine.save_checkpoint(str(directory), tag=CHECKPOINT_TAG)
    torch.save(rng_state(), directory / f"rng_rank{rank}.pt")
    if rank == 0:
        (directory / PROGRESS_FILE).write_text(json.dumps(progress, indent=2))
    world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    write_manifest(directory, rank, world_size)


def checkpoint_name(progress: dict[str, Any]) -> str:
    """``step-<step>``; after a fallback to an older checkpoint, with the fallback's suffix: the
    damaged checkpoints are still in Ray's list, and Ray deletes an evicted checkpoint by its path."""
    fallbacks = progress.get("checkpoint_fallbacks") or [{}]
    return f"step-{progress['global_step']:08d}{fallbacks[-1].get('suffix', '')}"


@contextlib.contextmanager
def latest_checkpoint() -> Iterator[tuple[str | None, bool]]:
    """The last checkpoint Ray holds for this phase as a local directory (None: there is none)
    for the block, and whether its older siblings are beside it. In a bucket, the node's workers
    share one download of it (Ray's ``as_directory``), removed after the block."""
    import pyarrow.fs
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        yield None, False
        return
    with checkpoint.as_directory() as directory:
        yield directory, isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem)


def pick_checkpoint(rank: int, phase_id: str, latest: str | None, look_back: bool = True) -> tuple[str | None, dict[str, Any] | None]:
    """The checkpoint to resume from: ``latest`` (after a worker failure or an interrupted run)
    if its manifest holds, else (``look_back``) the newest intact older one, said in one line
    naming the damaged file. Rank 0 reads and hashes; every rank gets its answer. Returns the
    directory (None: start from step 0) and, after a fallback, its record."""
    if latest is None:
        return None, None
    answer: list[Any] = [None, None]
    if rank == 0:
        answer = _newest_intact_answer(Path(latest), phase_id, look_back)
    if torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(answer, src=0)
    return answer[0], answer[1]


def _newest_intact_answer(latest: Path, phase_id: str, look_back: bool) -> list[Any]:
    """Rank 0's part of ``pick_checkpoint``: [directory or None, fallback record or None]."""
    from xit_dist.train.checkpoint_manifest import newest_intact

    chosen, damaged = newest_intact(latest, look_back)
    fallback = None
    if damaged:
        fallback = {
            "damaged": {path.name: problem for path, problem in damaged},
            "resumed_from": chosen.name if chosen else None,
            "suffix": f"-r{int(time.time())}",
        }
        then = f"resuming from {chosen.name}" if chosen else "no intact checkpoint left: training from step 0"
        bad = "; ".join(f"{path}/{problem}" for path, problem in damaged)
        print(f"[{phase_id}] damaged checkpoint file {bad}; {then}", flush=True)
    return [str(chosen) if chosen else None, fallback]


def resume_from_checkpoint(engine, rank: int, directory: str | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Restores model, optimizer and scheduler from ``directory`` (``pick_checkpoint``); returns
    the progress record and this rank's RNG state, which the loop restores once it is back at
    the same data position."""
    if directory is None:
        return None
    engine.load_checkpoint(directory, tag=CHECKPOINT_TAG, load_optimizer_states=True, load_lr_scheduler_states=True)
    progress = json.loads((Path(directory) / PROGRESS_FILE).read_text())
    rng = torch.load(Path(directory) / f"rng_rank{rank}.pt", weights_only=False)
    return progress, rng
