"""SQuAD v1.1 (rajpurkar/squad, config plain_text): English extractive QA, one of the paper's
intermediate tasks and the English training data of XQuAD and MLQA (as XTREME defines it).
Also home of the column roles every extractive-QA task shares (``QAColumns``)."""

from dataclasses import dataclass
from typing import Literal

from xit_dist.tasks.base import DataSource, Task


@dataclass(frozen=True)
class QAColumns:
    """How the extractive-QA format reads a SQuAD-style data set: the columns holding the
    question id, context, question and answers (``{"text": [...], "answer_start": [...]}``),
    whether a question may have no answer (SQuAD v2.0), and which official script scores it
    (``"squad"``: SQuAD v1.1's, used by XQuAD and TyDiQA; ``"mlqa"``: MLQA's, per language)."""

    id: str = "id"
    context: str = "context"
    question: str = "question"
    answers: str = "answers"
    allows_unanswerable: bool = False
    metric_style: Literal["squad", "mlqa"] = "squad"


# rajpurkar/squad and rajpurkar/squad_v2.
SQUAD_SCHEMA = {
    "id": "string",
    "title": "string",
    "context": "string",
    "question": "string",
    "answers": {"text": ["string"], "answer_start": ["int32"]},
}
# google/xtreme's MLQA.<l>.<l> and tydiqa configs: the same columns, answer_start first inside
# answers (the order does not matter to the cast); XQuAD.<lang> has no title column.
XTREME_QA_SCHEMA = {**SQUAD_SCHEMA, "answers": {"answer_start": ["int32"], "text": ["string"]}}
XQUAD_SCHEMA = {name: kind for name, kind in XTREME_QA_SCHEMA.items() if name != "title"}
SQUAD_COLUMNS = QAColumns()


def squad_source(split: str) -> DataSource:
    """``split``: train or validation (the hub has no test split)."""
    return DataSource("rajpurkar/squad", "plain_text", split, SQUAD_COLUMNS, SQUAD_SCHEMA)


def _eval_source(split: str, lang: str) -> DataSource:
    return squad_source("validation")


SQUAD = Task(
    name="squad",
    format="extractive_qa",
    description="SQuAD v1.1 (rajpurkar/squad, config plain_text); English only. "
    "'validation' and 'test' both evaluate on validation (the test set is hidden).",
    label_names=(),
    languages=("en",),
    train=squad_source("train"),
    dev=squad_source("validation"),
    eval_source=_eval_source,
    metric="f1",
)
