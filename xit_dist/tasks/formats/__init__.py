"""Task formats, registered by type: each owns its featurisation, its head and its predictions."""

from __future__ import annotations

from xit_dist.tasks.formats.pair_classification import PairClassification

FORMATS = {PairClassification.name: PairClassification()}


def get_format(name: str):
    return FORMATS[name]
