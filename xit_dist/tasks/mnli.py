"""MNLI (GLUE): the paper's strongest intermediate task, and XNLI's English training data."""

from xit_dist.tasks import register
from xit_dist.tasks.base import DataSource, PairColumns, Task

NLI_LABELS = ("entailment", "neutral", "contradiction")  # GLUE's ClassLabel order

MNLI_SCHEMA = {
    "premise": "string",
    "hypothesis": "string",
    "label": ("classlabel", NLI_LABELS),
    "idx": "int32",
}
MNLI_COLUMNS = PairColumns(text_a="premise", text_b="hypothesis", label="label")


def mnli_source(split: str) -> DataSource:
    """``split``: train, validation_matched, validation_mismatched (test labels are hidden)."""
    return DataSource("nyu-mll/glue", "mnli", split, MNLI_COLUMNS, MNLI_SCHEMA)


def _eval_source(split: str, lang: str) -> DataSource:
    return mnli_source("validation_matched" if split in ("validation", "test") else split)


MNLI = register(
    Task(
        name="mnli",
        format="pair_classification",
        description="Multi-Genre NLI (nyu-mll/glue, config mnli); English only. "
        "'validation' and 'test' both evaluate on validation_matched (GLUE test labels are hidden).",
        label_names=NLI_LABELS,
        languages=("en",),
        train=mnli_source("train"),
        dev=mnli_source("validation_matched"),
        eval_source=_eval_source,
    )
)
