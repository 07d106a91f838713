"""PAWS-X (XTREME): adversarial paraphrase identification in 7 languages (configs
``PAWS-X.<lang>``). Training uses ``PAWS-X.en`` only: the other languages' train splits are
machine translations, which would break the zero-shot setting; an intermediate stage may
still train on them (``languages:``, Study 1), through ``translate_train``."""

from xit_dist.tasks.base import DataSource, PairColumns, Task
from xit_dist.tasks.languages import task_languages

PAWSX_LANGUAGES = task_languages("pawsx")
PAWSX_LABELS = ("not_paraphrase", "paraphrase")
PAWSX_SCHEMA = {"sentence1": "string", "sentence2": "string", "label": "string"}
PAWSX_COLUMNS = PairColumns(text_a="sentence1", text_b="sentence2", label="label", label_values=("0", "1"))


def _source(split: str, lang: str) -> DataSource:
    return DataSource("google/xtreme", f"PAWS-X.{lang}", split, PAWSX_COLUMNS, PAWSX_SCHEMA)


PAWSX = Task(
    name="pawsx",
    format="pair_classification",
    description="Paraphrase Adversaries from Word Scrambling, cross-lingual (google/xtreme, PAWS-X.<lang>).",
    label_names=PAWSX_LABELS,
    languages=PAWSX_LANGUAGES,
    train=_source("train", "en"),
    dev=_source("validation", "en"),
    eval_source=_source,
    benchmarks=("xtreme",),
    translate_train=lambda lang: _source("train", lang),
)
