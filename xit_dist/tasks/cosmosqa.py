"""Cosmos QA (``allenai/cosmos_qa``): reading comprehension that needs commonsense about the
likely causes and effects of events in a short narrative; four answers. The context is the
passage followed by the question; the choices are ``answer0``..``answer3``; ``label`` is the
index (-1 on the hidden test split, so 'validation' and 'test' both evaluate on validation).

Hub note: the hub's main branch still holds only the loading script (``cosmos_qa.py``),
which `datasets` >= 4 refuses, so without ``data.revision`` this task reads the hub's Parquet
export (revision ``refs/convert/parquet``; not reachable from where this was written, so not
checked against the live hub). A local mirror in this schema (``data.task_files``) also works.
"""

from xit_dist.tasks.base import PARQUET_EXPORT, DataSource, Task
from xit_dist.tasks.choice_columns import ChoiceColumns

COSMOSQA_ANSWERS = ("answer0", "answer1", "answer2", "answer3")
COSMOSQA_SCHEMA = {
    "id": "string",
    "context": "string",
    "question": "string",
    **{answer: "string" for answer in COSMOSQA_ANSWERS},
    "label": "int32",
}
COSMOSQA_COLUMNS = ChoiceColumns(context=("context", "question"), choices=COSMOSQA_ANSWERS, label="label")


def cosmosqa_source(split: str) -> DataSource:
    return DataSource("allenai/cosmos_qa", None, split, COSMOSQA_COLUMNS, COSMOSQA_SCHEMA, default_revision=PARQUET_EXPORT)


def _eval_source(split: str, lang: str) -> DataSource:
    return cosmosqa_source("validation")


COSMOSQA = Task(
    name="cosmosqa",
    format="multiple_choice",
    description="Cosmos QA (allenai/cosmos_qa), 4 answers; English only. "
    "'validation' and 'test' both evaluate on validation (test labels are hidden).",
    label_names=COSMOSQA_ANSWERS,
    languages=("en",),
    train=cosmosqa_source("train"),
    dev=cosmosqa_source("validation"),
    eval_source=_eval_source,
)
