"""HellaSwag (``Rowan/hellaswag``): pick the ending that continues a video caption or WikiHow
step; one of the paper's three best intermediate tasks.

Recipe (jiant's, and the transformers SWAG example's): the context is ``ctx_a``; each choice is
``ctx_b`` (the start of the sentence the endings complete, empty for most WikiHow rows)
followed by one of the four ``endings``. ``label`` is a string "0".."3"; the test split's labels
are empty (hidden), so 'validation' and 'test' both evaluate on validation.

Hub note: the hub's main branch still holds only the loading script (``hellaswag.py``),
which `datasets` >= 4 refuses, so without ``data.revision`` this task reads the hub's Parquet
export (revision ``refs/convert/parquet``; not reachable from where this was written, so not
checked against the live hub). A local mirror in this schema (``data.task_files``) also works.
"""

from xit_dist.tasks.base import PARQUET_EXPORT, DataSource, Task
from xit_dist.tasks.choice_columns import ChoiceColumns

HELLASWAG_LABELS = ("0", "1", "2", "3")
HELLASWAG_SCHEMA = {
    "ind": "int32",
    "activity_label": "string",
    "ctx_a": "string",
    "ctx_b": "string",
    "ctx": "string",
    "endings": ["string"],
    "source_id": "string",
    "split": "string",
    "split_type": "string",
    "label": "string",
}
HELLASWAG_COLUMNS = ChoiceColumns(
    context=("ctx_a",), choices="endings", choice_prefix="ctx_b", label="label", label_values=HELLASWAG_LABELS
)


def hellaswag_source(split: str) -> DataSource:
    return DataSource("Rowan/hellaswag", None, split, HELLASWAG_COLUMNS, HELLASWAG_SCHEMA, default_revision=PARQUET_EXPORT)


def _eval_source(split: str, lang: str) -> DataSource:
    return hellaswag_source("validation")


HELLASWAG = Task(
    name="hellaswag",
    format="multiple_choice",
    description="HellaSwag commonsense sentence completion (Rowan/hellaswag), 4 endings; English only. "
    "'validation' and 'test' both evaluate on validation (test labels are hidden).",
    label_names=HELLASWAG_LABELS,
    languages=("en",),
    train=hellaswag_source("train"),
    dev=hellaswag_source("validation"),
    eval_source=_eval_source,
)
