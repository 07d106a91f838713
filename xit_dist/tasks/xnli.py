"""XNLI (XTREME): 15 languages, validation and test only, all in the hub's one ``XNLI``
config (column ``language``); English training data is MNLI, as XTREME defines it."""

from xit_dist.tasks.base import DataSource, PairColumns, Task
from xit_dist.tasks.languages import task_languages
from xit_dist.tasks.mnli import NLI_LABELS, mnli_source

XNLI_LANGUAGES = task_languages("xnli")
XNLI_SCHEMA = {"sentence1": "string", "sentence2": "string", "language": "string", "gold_label": "string"}
XNLI_COLUMNS = PairColumns(text_a="sentence1", text_b="sentence2", label="gold_label", label_values=NLI_LABELS)


def _eval_source(split: str, lang: str) -> DataSource:
    return DataSource("google/xtreme", "XNLI", split, XNLI_COLUMNS, XNLI_SCHEMA, language_column="language", language=lang)


XNLI = Task(
    name="xnli",
    format="pair_classification",
    description="Cross-lingual NLI (google/xtreme, config XNLI); trains on MNLI, evaluates in 15 languages.",
    label_names=NLI_LABELS,
    languages=XNLI_LANGUAGES,
    train=mnli_source("train"),
    dev=_eval_source("validation", "en"),
    eval_source=_eval_source,
    benchmarks=("xtreme", "xtreme-r"),
)
