"""A model's ``config.json`` without its weights, and the longest input it takes.

Read for a built-in tiny model (its defining numbers), a local checkpoint directory, or a hub
model whose config ships with xit-dist (``builtin/configs/<hub id>/config.json``: the models the
paper uses), so that ``validate`` can check lengths and ``plan`` can estimate memory offline.
Any other hub id gives None: nothing is downloaded here. Imports neither torch nor transformers.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from xit_dist.builtin.assets import BUILTIN

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "builtin" / "configs"
# hub id -> its shipped directory; the legacy ids without the organisation are the same models
SHIPPED = {
    "FacebookAI/xlm-roberta-large": "FacebookAI/xlm-roberta-large",
    "xlm-roberta-large": "FacebookAI/xlm-roberta-large",
    "FacebookAI/xlm-roberta-base": "FacebookAI/xlm-roberta-base",
    "xlm-roberta-base": "FacebookAI/xlm-roberta-base",
}
# Models whose position ids start after the padding id (fairseq's make_positions): the first
# pad_token_id + 1 rows of the position embeddings are never used for a token.
PADDING_OFFSET_TYPES = frozenset({
    "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm", "data2vec-text",
    "xmod", "longformer", "ibert", "mpnet",
})


def shipped_config_dir(name_or_path: str) -> Path | None:
    """The directory of the shipped config of a hub id, or None."""
    relative = SHIPPED.get(name_or_path)
    return SHIPPED_DIR / relative if relative else None


def is_local(name_or_path: str) -> bool:
    """The spec's rule (``ModelSpec``): a path starts with '.', '/' or '~'; anything else is a hub id."""
    return name_or_path.startswith((".", "/", "~"))


def read_model_config(name_or_path: str) -> dict | None:
    """The model's config as a dict, or None when it is not known without the hub (or a local
    directory has no readable config.json: loading the model reports that)."""
    if name_or_path.startswith(BUILTIN):
        from xit_dist.builtin.models import builtin_config

        return builtin_config(name_or_path[len(BUILTIN):])
    if is_local(name_or_path):
        return _config_file(Path(name_or_path).expanduser() / "config.json")
    shipped = shipped_config_dir(name_or_path)
    return _config_file(shipped / "config.json") if shipped else None


def _config_file(path: Path) -> dict | None:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


@lru_cache(maxsize=64)
def _shipped_limit(name_or_path: str) -> tuple[int, str] | None:
    return position_limit(read_model_config(name_or_path) or {})


def model_length_limit(name_or_path: str) -> tuple[int, str] | None:
    """(longest input in tokens, specials included; how that follows from the config), or None
    when the config is unknown or the model has no absolute position limit."""
    if not is_local(name_or_path):  # built-in and shipped configs never change: read once
        return _shipped_limit(name_or_path)
    return position_limit(read_model_config(name_or_path) or {})


def position_limit(config: dict) -> tuple[int, str] | None:
    """``max_position_embeddings``, less the padding offset of RoBERTa-style models (XLM-R:
    514 - 2 = 512); None without absolute positions (DeBERTa-v2's ``position_biased_input: false``)."""
    positions = config.get("max_position_embeddings")
    if not isinstance(positions, int) or config.get("position_biased_input") is False:
        return None
    if config.get("model_type") in PADDING_OFFSET_TYPES:
        offset = int(config.get("pad_token_id", 1)) + 1
        return positions - offset, f"max_position_embeddings {positions} minus the padding offset {offset}"
    return positions, f"max_position_embeddings {positions}"
