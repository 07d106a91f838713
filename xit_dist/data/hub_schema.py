"""What every reader and transform of rows shares: a hub schema (``DataSource.schema``'s
notation) as `datasets` features, and the `datasets` cache key of a transform of rows.

It imports nothing of xit-dist, so the readers (``data.loading``), the label checks
(``data.class_labels``) and the task formats can all stand on it."""

from __future__ import annotations

import hashlib


def hub_features(schema: dict[str, object]):
    """The hub's column types as `datasets.Features` (see ``DataSource`` for the notation)."""
    from datasets import ClassLabel, Features, List, Value

    def feature(kind):
        if isinstance(kind, tuple) and kind[0] == "classlabel":
            return ClassLabel(names=list(kind[1]))
        if isinstance(kind, list):
            return List(feature(kind[0]))
        if isinstance(kind, dict):
            return {name: feature(inner) for name, inner in kind.items()}
        return Value(kind)

    return Features({name: feature(kind) for name, kind in schema.items()})


def derived_fingerprint(rows, *parts: object) -> str:
    """`datasets` cache key of a transform: the input's fingerprint plus what the transform does."""
    return hashlib.sha256("|".join([rows._fingerprint, *map(str, parts)]).encode()).hexdigest()[:32]
