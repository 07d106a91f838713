"""QQP (GLUE): Quora question pairs, duplicate or not; one of the paper's intermediate tasks.
English only; GLUE's test labels are hidden (-1), so 'test' evaluates on validation."""

from xit_dist.tasks.base import DataSource, PairColumns, Task

QQP_LABELS = ("not_duplicate", "duplicate")  # GLUE's ClassLabel order
QQP_SCHEMA = {"question1": "string", "question2": "string", "label": ("classlabel", QQP_LABELS), "idx": "int32"}
QQP_COLUMNS = PairColumns(text_a="question1", text_b="question2", label="label")


def _source(split: str) -> DataSource:
    return DataSource("nyu-mll/glue", "qqp", split, QQP_COLUMNS, QQP_SCHEMA)


QQP = Task(
    name="qqp",
    format="pair_classification",
    description="Quora Question Pairs (nyu-mll/glue, config qqp); English only; 'test' evaluates on validation.",
    label_names=QQP_LABELS,
    languages=("en",),
    train=_source("train"),
    dev=_source("validation"),
    eval_source=lambda split, lang: _source("validation"),
)
