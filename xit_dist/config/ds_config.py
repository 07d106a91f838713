"""DeepSpeed configs: find one by name or path and read it (``load_ds_config``, the only way in:
the file is parsed once), and fill its ``"auto"`` values from the spec (``fill_auto``).

Files may hold comments, as DeepSpeed's own hjson loader allows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hjson

from xit_dist.errors import SpecError

# The user-facing copy at the top of a source checkout (absent in an installed wheel).
REPO_DS_CONFIGS = Path(__file__).resolve().parents[2] / "ds_configs"
# The copy shipped inside the package (package data), byte for byte the same as REPO_DS_CONFIGS
# (tests/test_packaging.py): what a bare name finds when xit-dist is pip-installed.
PACKAGED_DS_CONFIGS = Path(__file__).resolve().parents[1] / "ds_configs"


def _search_dirs() -> list[Path]:
    return [Path.cwd() / "ds_configs", REPO_DS_CONFIGS, PACKAGED_DS_CONFIGS]


def _known_names() -> list[str]:
    return sorted({p.stem for d in _search_dirs() if d.is_dir() for p in d.glob("*.json")})


def _looks_like_path(name_or_path: str | Path) -> bool:
    text = str(name_or_path)
    return isinstance(name_or_path, Path) or "/" in text or text.endswith(".json")


def _find(name_or_path: str | Path) -> Path:
    """The file a spec's ``distributed.deepspeed_config`` names (see ``load_ds_config``)."""
    if _looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise SpecError(f"deepspeed config file not found: {name_or_path}")
        return path
    found = next((d / f"{name_or_path}.json" for d in _search_dirs() if (d / f"{name_or_path}.json").is_file()), None)
    if found is None:
        raise SpecError(f"unknown deepspeed config {name_or_path!r}; known: {', '.join(_known_names())} (or a path)")
    return found


def load_ds_config(name_or_path: str | Path) -> dict[str, Any]:
    """The DeepSpeed config a spec names, parsed (``"auto"`` values left for ``fill_auto``).

    A value with a ``/`` or ending in ``.json`` is a path. A bare name (``zero2``) is looked up as
    ``<name>.json`` in, first to last: ``./ds_configs/`` (the directory the command runs in), the
    source checkout's top-level ``ds_configs/`` (the copy users edit), and the copy shipped
    inside the package (what a pip-installed xit-dist finds from any directory). SpecError names
    the file, or the known names.
    """
    path = _find(name_or_path)
    try:
        config = hjson.loads(path.read_text(encoding="utf-8"))
    except (hjson.HjsonDecodeError, UnicodeDecodeError) as err:
        raise SpecError(f"{path}: not valid JSON/HJSON: {err}") from None
    config = _plain(config)
    stage = config.get("zero_optimization", {}).get("stage", 0)
    if stage not in (0, 1, 2, 3):
        raise SpecError(f"{path}: zero_optimization.stage must be 0-3 (got {stage!r})")
    return config


def _plain(value: Any) -> Any:
    """hjson returns OrderedDicts; DeepSpeed and pickling want plain types."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def zero_stage(config: dict[str, Any]) -> int:
    return int(config.get("zero_optimization", {}).get("stage", 0))


def fill_auto(
    config: dict[str, Any],
    *,
    micro_batch_size: int,
    gradient_accumulation_steps: int,
    world_size: int,
    learning_rate: float,
    weight_decay: float,
    adam_epsilon: float,
    max_grad_norm: float,
    bf16: bool,
    hidden_size: int,
) -> dict[str, Any]:
    """Replace every ``"auto"`` with the spec's value.

    Bucket sizes are derived from the model's hidden size, as transformers' integration does:
    DeepSpeed's fixed defaults (5e8 elements) allocate a 2 GB bucket per rank even for a small
    model (measured, see STACK_NOTES).
    """
    filled = _plain(config)
    top = {
        "train_micro_batch_size_per_gpu": micro_batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "train_batch_size": micro_batch_size * gradient_accumulation_steps * world_size,
        "gradient_clipping": max_grad_norm,
    }
    for key, value in top.items():
        if filled.get(key, "auto") == "auto":
            filled[key] = value
    bf16_section = filled.setdefault("bf16", {})
    if bf16_section.get("enabled", "auto") == "auto":
        bf16_section["enabled"] = bf16
    if bf16_section["enabled"] and zero_stage(filled) >= 1:
        # Gradients accumulated and reduced in fp32 (DeepSpeed's default for bf16 is bf16). It is
        # also what lets ZeRO-1/2 keep exactly this rank's share of the gradients: with gradients
        # in the weights' dtype DeepSpeed holds every parameter that straddles a partition boundary
        # whole, XLM-R's 256M-parameter embedding included (benchmarks/zero_memory.py, BENCHMARKS.md).
        filled.setdefault("data_types", {}).setdefault("grad_accum_dtype", "fp32")
    zero = filled.setdefault("zero_optimization", {})
    buckets = {
        "reduce_bucket_size": hidden_size * hidden_size,
        "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "stage3_param_persistence_threshold": 10 * hidden_size,
        "allgather_bucket_size": hidden_size * hidden_size,
    }
    for key, value in buckets.items():
        if zero.get(key) == "auto":
            zero[key] = value
    optimizer_params = filled.get("optimizer", {}).get("params", {})
    for key, value in {"lr": learning_rate, "weight_decay": weight_decay, "eps": adam_epsilon}.items():
        if optimizer_params.get(key) == "auto":
            optimizer_params[key] = value
    left = _auto_keys(filled)
    if left:
        raise SpecError(f"deepspeed config: no value known for 'auto' key(s) {', '.join(left)}")
    return filled


def _auto_keys(tree: Any, prefix: str = "") -> list[str]:
    if isinstance(tree, dict):
        return [k for key, v in tree.items() for k in _auto_keys(v, f"{prefix}{key}.")]
    return [prefix.rstrip(".")] if tree == "auto" else []
