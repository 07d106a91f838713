"""Build-once directories for generated assets (the synthetic benchmark, the built-in tiny
models): shared by tests, CLI runs and parallel workers, so a directory is either absent or
complete, and concurrent builders never see each other's half-written files."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _holds_build(root: Path, marker: str, identity: dict) -> bool:
    content = _read_marker(root / marker)
    return isinstance(content, dict) and all(content.get(key) == value for key, value in identity.items())


def publish_once(root: Path, *, marker: str, identity: dict, build: Callable[[Path], dict | None]) -> Path:
    """Make ``root`` hold the output of ``build``, building only when it is missing or stale.

    Why: demo assets are shared by tests, CLI runs and parallel workers. ``build`` fills a fresh
    directory beside ``root``; the marker file (``identity`` plus whatever ``build`` returns) is
    written last and the directory is then renamed into place, so ``root`` is either absent or
    complete. If another process publishes first, its (identical) result is kept. A stale build
    of ours (marker present, different identity) is replaced; any other non-empty directory is
    left alone and raises ``FileExistsError``.
    """
    root = Path(root)
    if _holds_build(root, marker, identity):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    workspace = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
    try:
        staging = workspace / root.name
        staging.mkdir()  # unlike mkdtemp's private 0700 directory, this one gets the usual umask
        extra = build(staging) or {}
        marker_text = json.dumps({**identity, **extra}, indent=2, ensure_ascii=False) + "\n"
        (staging / marker).write_text(marker_text, encoding="utf-8")
        for attempt in range(5):
            try:
                os.rename(staging, root)  # atomic; replaces root only if root is an empty directory
                return root
            except OSError:
                if _holds_build(root, marker, identity):
                    return root  # a concurrent caller won the race
                if root.exists() and not (root / marker).exists():
                    raise FileExistsError(f"{root} exists and is not a build of ours; refusing to replace it")
                try:
                    os.rename(root, workspace / f"stale-{attempt}")
                except FileNotFoundError:
                    pass  # someone else moved it away; try again
        raise RuntimeError(f"could not publish {root}: it kept being replaced concurrently")
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
