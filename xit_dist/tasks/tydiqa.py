"""TyDiQA-GoldP (XTREME): extractive QA on the gold passage, 9 typologically diverse languages.
google/xtreme's one ``tydiqa`` config mixes all languages in train and validation; a row's
language is the prefix of its id (``english-...``, ``swahili-...``). Training uses the English
rows of train only (XTREME's setting). TyDiQA has no public test set: XTREME reports the GoldP
dev set, so 'validation' and 'test' both read validation. Scored with the SQuAD v1.1 script."""

from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.languages import task_languages
from xit_dist.tasks.squad import SQUAD_COLUMNS, XTREME_QA_SCHEMA

# The language names TyDiQA writes as id prefixes.
ID_PREFIXES = {
    "ar": "arabic",
    "bn": "bengali",
    "en": "english",
    "fi": "finnish",
    "id": "indonesian",
    "ko": "korean",
    "ru": "russian",
    "sw": "swahili",
    "te": "telugu",
}


def tydiqa_source(split: str, lang: str) -> DataSource:
    return DataSource(
        "google/xtreme",
        "tydiqa",
        split,
        SQUAD_COLUMNS,
        XTREME_QA_SCHEMA,
        language_column="id",
        language=ID_PREFIXES[lang],
        match="prefix",
    )


def _eval_source(split: str, lang: str) -> DataSource:
    return tydiqa_source("validation", lang)


TYDIQA = Task(
    name="tydiqa",
    format="extractive_qa",
    description="TyDiQA-GoldP (google/xtreme, config tydiqa; language = id prefix); trains on its English "
    "rows; 'test' reads the GoldP dev set, as XTREME reports.",
    label_names=(),
    languages=task_languages("tydiqa"),
    train=tydiqa_source("train", "en"),
    dev=_eval_source("validation", "en"),
    eval_source=_eval_source,
    metric="f1",
    benchmarks=("xtreme", "xtreme-r"),
)
