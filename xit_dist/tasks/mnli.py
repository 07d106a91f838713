"""MNLI (GLUE): the paper's strongest intermediate task, and XNLI's English training data."""

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


def xnli_translated_mnli(lang: str) -> DataSource:
    """MNLI's training set machine-translated into an XNLI language, as the XNLI release ships
    it (``facebook/xnli``, config ``<lang>``, split ``train``; same columns and labels as MNLI,
    per the dataset card): the translate-train data of a multilingual intermediate stage."""
    return DataSource("facebook/xnli", lang, "train", MNLI_COLUMNS, {k: v for k, v in MNLI_SCHEMA.items() if k != "idx"})


def _eval_source(split: str, lang: str) -> DataSource:
    return mnli_source("validation_matched" if split in ("validation", "test") else split)


MNLI = Task(
    name="mnli",
    format="pair_classification",
    description="Multi-Genre NLI (nyu-mll/glue, config mnli); English only. "
    "'validation' and 'test' both evaluate on validation_matched (GLUE test labels are hidden).",
    label_names=NLI_LABELS,
    languages=("en",),
    train=mnli_source("train"),
    dev=mnli_source("validation_matched"),
    eval_source=_eval_source,
    translate_train=lambda lang: xnli_translated_mnli(lang),
)
