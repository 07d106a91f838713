"""SQuAD v2.0 (rajpurkar/squad_v2, config squad_v2): SQuAD v1.1 plus unanswerable questions
(empty ``answers``), for which the model must predict the empty answer. English only."""

from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.squad import SQUAD_SCHEMA, QAColumns

SQUAD_V2_COLUMNS = QAColumns(allows_unanswerable=True)


def squad_v2_source(split: str) -> DataSource:
    return DataSource("rajpurkar/squad_v2", "squad_v2", split, SQUAD_V2_COLUMNS, SQUAD_SCHEMA)


def _eval_source(split: str, lang: str) -> DataSource:
    return squad_v2_source("validation")


SQUAD_V2 = Task(
    name="squad_v2",
    format="extractive_qa",
    description="SQuAD v2.0 (rajpurkar/squad_v2); English only; unanswerable questions score right only "
    "with the empty answer. 'validation' and 'test' both evaluate on validation (the test set is hidden).",
    label_names=(),
    languages=("en",),
    train=squad_v2_source("train"),
    dev=squad_v2_source("validation"),
    eval_source=_eval_source,
    metric="f1",
)
