"""Content hashes written with every checkpoint, and the choice of the checkpoint to resume from.

DeepSpeed loads a truncated shard with an error that names no file, and a shard with a few
overwritten bytes without any error at all. So every rank lists the files it wrote, with their
sizes and SHA-256, in ``manifest_rank<N>.json`` (one file per rank: Ray merges the ranks'
directories into one checkpoint, so a shared name would be overwritten), and a resume verifies
them before DeepSpeed reads anything. A damaged checkpoint is skipped for the newest intact one
Ray still keeps (``CheckpointConfig(num_to_keep=...)``) in the same run directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

MANIFEST_PREFIX = "manifest_rank"
_NAME = re.compile(r"^step-(\d+)(?:-r(\d+))?$")  # worker.checkpoint_name: step-<step>[-r<fallback time>]
_CHUNK = 1 << 22


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: Path, rank: int, world_size: int) -> Path:
    """List every file this rank wrote into ``directory`` (its own, before Ray merges the ranks)."""
    files = {
        path.relative_to(directory).as_posix(): {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.name.startswith(MANIFEST_PREFIX)
    }
    target = directory / f"{MANIFEST_PREFIX}{rank}.json"
    target.write_text(json.dumps({"rank": rank, "world_size": world_size, "files": files}, indent=1))
    return target


def find_damage(directory: Path) -> str | None:
    """None when every file every rank listed is there with its size and hash; else what is wrong,
    naming the file. A checkpoint without any manifest (written before manifests existed) is
    taken as it is."""
    manifests = sorted(directory.glob(f"{MANIFEST_PREFIX}*.json"))
    if not manifests:
        return None
    listed: list[tuple[str, dict, str]] = []
    for manifest in manifests:
        try:
            content = json.loads(manifest.read_text())
            files, world_size = content["files"], content["world_size"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            return f"{manifest.name}: unreadable ({type(err).__name__})"
        listed += [(name, entry, manifest.name) for name, entry in files.items()]
    missing = sorted({f"{MANIFEST_PREFIX}{rank}.json" for rank in range(world_size)} - {m.name for m in manifests})
    if missing:
        return f"{missing[0]}: missing ({world_size} ranks wrote this checkpoint)"
    for name, entry, _ in listed:  # sizes first: cheap, and what a truncation changes
        path = directory / name
        if not path.is_file():
            return f"{name}: missing"
        if path.stat().st_size != entry["bytes"]:
            return f"{name}: {path.stat().st_size} bytes, {entry['bytes']} when written"
    for name, entry, manifest in listed:
        if file_sha256(directory / name) != entry["sha256"]:
            return f"{name}: content differs from its SHA-256 in {manifest}"
    return None


def _order(path: Path) -> tuple[int, int] | None:
    match = _NAME.match(path.name)
    return (int(match[1]), int(match[2] or 0)) if match else None


def candidates(latest: Path) -> list[Path]:
    """``latest`` (the checkpoint Ray hands the workers), then the older checkpoints of the same
    run, newest first. Directories newer than ``latest`` are uploads Ray never registered."""
    newest = _order(latest)
    older = [path for path in latest.parent.iterdir() if path.is_dir() and path != latest and _order(path) is not None]
    if newest is not None:
        older = [path for path in older if _order(path) < newest]
    return [latest, *sorted(older, key=_order, reverse=True)]


def newest_intact(latest: Path, look_back: bool = True) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The checkpoint to resume from (None: none is intact) and the damaged ones passed over;
    without ``look_back`` (a checkpoint downloaded from a bucket alone) only ``latest`` is tried."""
    damaged: list[tuple[Path, str]] = []
    for path in candidates(latest) if look_back else [latest]:
        problem = find_damage(path)
        if problem is None:
            return path, damaged
        damaged.append((path, problem))
    return None, damaged
