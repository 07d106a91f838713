"""XQuAD (XTREME): 1190 SQuAD v1.1 dev questions translated into 10 languages (11 in XTREME,
12 with Romanian in XTREME-R), configs ``XQuAD.<lang>`` of google/xtreme. The hub has only a
validation split, so 'validation' and 'test' both read it; the English training data is SQuAD
v1.1, as XTREME defines it. Scored with the SQuAD v1.1 script."""

from xit_dist.tasks import register
from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.languages import task_languages
from xit_dist.tasks.squad import SQUAD_COLUMNS, XQUAD_SCHEMA, squad_source


def _eval_source(split: str, lang: str) -> DataSource:
    return DataSource("google/xtreme", f"XQuAD.{lang}", "validation", SQUAD_COLUMNS, XQUAD_SCHEMA)


XQUAD = register(
    Task(
        name="xquad",
        format="extractive_qa",
        description="Cross-lingual QA (google/xtreme, XQuAD.<lang>, validation only: 'test' reads it too); "
        "trains on SQuAD v1.1.",
        label_names=(),
        languages=task_languages("xquad"),
        languages_xtreme_r=task_languages("xquad", "xtreme-r"),
        train=squad_source("train"),
        dev=_eval_source("validation", "en"),
        eval_source=_eval_source,
        metric="f1",
        benchmarks=("xtreme", "xtreme-r"),
    )
)
