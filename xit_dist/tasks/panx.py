"""PAN-X / WikiANN NER (XTREME): PER, ORG and LOC entities in IOB2 tags, Rahimi et al.'s
balanced train/dev/test splits; trains on English, scored with seqeval F1.

Hub: ``google/xtreme`` configs ``PAN-X.<lang>`` for XTREME's 40 languages. XTREME-R's additions
(az gu lt pa pl qu ro uk) are not among them; they come from ``unimelb-nlp/wikiann`` (config
``<lang>``): the same WikiANN data, splits and schema (plus a ``spans`` column, ignored).
"""

from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.formats.token_tagging import TaggingColumns
from xit_dist.tasks.languages import task_languages

PANX_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")  # the hub's ClassLabel order
PANX_SCHEMA = {"tokens": ["string"], "ner_tags": [("classlabel", PANX_TAGS)], "langs": ["string"]}
PANX_COLUMNS = TaggingColumns(tokens="tokens", tags="ner_tags")
PANX_LANGUAGES = task_languages("panx")
WIKIANN_HUB_ID = "unimelb-nlp/wikiann"


def panx_source(split: str, lang: str) -> DataSource:
    if lang in PANX_LANGUAGES:
        return DataSource("google/xtreme", f"PAN-X.{lang}", split, PANX_COLUMNS, PANX_SCHEMA)
    return DataSource(WIKIANN_HUB_ID, lang, split, PANX_COLUMNS, PANX_SCHEMA)


PANX = Task(
    name="panx",
    format="token_tagging",
    description="Named entity recognition on WikiANN (google/xtreme, PAN-X.<lang>); trains on English, seqeval F1.",
    label_names=PANX_TAGS,
    languages=PANX_LANGUAGES,
    languages_xtreme_r=task_languages("panx", "xtreme-r"),
    train=panx_source("train", "en"),
    dev=panx_source("validation", "en"),
    eval_source=panx_source,
    metric="f1",
    benchmarks=("xtreme", "xtreme-r"),
)
