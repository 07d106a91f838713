"""Built-in assets (the tiny XLM-R and the synthetic offline benchmark), generated on first
use into a cache directory and reused after; deterministic, so every node can rebuild them."""

from __future__ import annotations

from pathlib import Path

from xit_dist.tracking.object_files import cache_root  # the node's cache (a bucket's mirror is there too)

BUILTIN = "builtin:"


def resolve_model_dir(name_or_path: str) -> str:
    """A hub id or a directory, as transformers' ``from_pretrained`` takes it."""
    if not name_or_path.startswith(BUILTIN):
        return str(Path(name_or_path).expanduser()) if name_or_path.startswith((".", "/", "~")) else name_or_path
    from xit_dist.builtin.models import build_builtin_model

    name = name_or_path[len(BUILTIN):]
    return str(build_builtin_model(name, cache_root() / "models" / name))


def resolve_data_dir(local_dir: str | None) -> Path | None:
    """``None`` means: read from the hub."""
    if local_dir is None:
        return None
    if local_dir == "builtin:demo":
        from xit_dist.builtin.demo_data import write_demo_benchmark

        return write_demo_benchmark(cache_root() / "data" / "demo")
    return Path(local_dir).expanduser().resolve()
