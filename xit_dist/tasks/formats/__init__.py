"""Task formats, registered by type: each owns its featurisation, its head, its predictions and
its score (the contract: ``base.TaskFormat``). Add a format's class to ``_CLASSES``."""

from __future__ import annotations

from xit_dist.tasks.formats.base import TaskFormat
from xit_dist.tasks.formats.extractive_qa import ExtractiveQA
from xit_dist.tasks.formats.multiple_choice import MultipleChoice
from xit_dist.tasks.formats.pair_classification import PairClassification
from xit_dist.tasks.formats.retrieval import Retrieval
from xit_dist.tasks.formats.token_tagging import TokenTagging

_CLASSES: tuple[type[TaskFormat], ...] = (PairClassification, MultipleChoice, TokenTagging, Retrieval, ExtractiveQA)
FORMATS: dict[str, TaskFormat] = {cls.name: cls() for cls in _CLASSES}


def get_format(name: str) -> TaskFormat:
    return FORMATS[name]
