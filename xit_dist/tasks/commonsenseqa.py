"""CommonsenseQA (``tau/commonsense_qa``): five-way questions about everyday concepts, no
passage. The context is the question; the choices are ``choices.text``; the gold
``answerKey`` ("A".."E") is looked up in the row's own ``choices.label``. The test split's
``answerKey`` is empty (hidden), so 'validation' and 'test' both evaluate on validation."""

from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.choice_columns import ChoiceColumns

COMMONSENSEQA_LABELS = ("A", "B", "C", "D", "E")
COMMONSENSEQA_SCHEMA = {
    "id": "string",
    "question": "string",
    "question_concept": "string",
    "choices": {"label": ["string"], "text": ["string"]},
    "answerKey": "string",
}
COMMONSENSEQA_COLUMNS = ChoiceColumns(
    context=("question",), choices="choices.text", label="answerKey", label_keys="choices.label"
)


def commonsenseqa_source(split: str) -> DataSource:
    return DataSource("tau/commonsense_qa", None, split, COMMONSENSEQA_COLUMNS, COMMONSENSEQA_SCHEMA)


def _eval_source(split: str, lang: str) -> DataSource:
    return commonsenseqa_source("validation")


COMMONSENSEQA = Task(
    name="commonsenseqa",
    format="multiple_choice",
    description="CommonsenseQA (tau/commonsense_qa), 5 choices; English only. "
    "'validation' and 'test' both evaluate on validation (test answers are hidden).",
    label_names=COMMONSENSEQA_LABELS,
    languages=("en",),
    train=commonsenseqa_source("train"),
    dev=commonsenseqa_source("validation"),
    eval_source=_eval_source,
)
