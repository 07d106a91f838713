"""MLQA (XTREME): extractive QA in 7 languages, context and question in the same language
(configs ``MLQA.<lang>.<lang>`` of google/xtreme; validation and test). The English training
data is SQuAD v1.1, as XTREME defines it. Scored with the MLQA script (per-language
normalisation)."""

from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.languages import task_languages
from xit_dist.tasks.squad import XTREME_QA_SCHEMA, QAColumns, squad_source

MLQA_COLUMNS = QAColumns(metric_style="mlqa")


def _eval_source(split: str, lang: str) -> DataSource:
    return DataSource("google/xtreme", f"MLQA.{lang}.{lang}", split, MLQA_COLUMNS, XTREME_QA_SCHEMA)


MLQA = Task(
    name="mlqa",
    format="extractive_qa",
    description="Multilingual QA (google/xtreme, MLQA.<lang>.<lang>); trains on SQuAD v1.1; MLQA's own metric.",
    label_names=(),
    languages=task_languages("mlqa"),
    train=squad_source("train"),
    dev=_eval_source("validation", "en"),
    eval_source=_eval_source,
    metric="f1",
    benchmarks=("xtreme", "xtreme-r"),
)
