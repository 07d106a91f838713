"""ANLI+ (the paper's name): ANLI rounds 1-3 + SNLI + MNLI training sets under one three-way
NLI head. All three hubs use the same ClassLabel order (entailment, neutral, contradiction), so
the label ids agree; SNLI's rows without a gold label (-1) are dropped by the format.

Evaluation: ANLI's three dev (validation) or test rounds are separate hub splits; this task
reports round 3, the hardest and the one built against the strongest models (a choice: the
paper does not say which dev set selected its ANLI+ models). English only.

Hub configs: both data sets have one config, ``plain_text`` (their old loading scripts' only
BUILDER_CONFIG, kept by the Parquet conversion: ``facebook/anli/plain_text/``,
``stanfordnlp/snli/plain_text/``), so a local mirror keeps them under ``plain_text/``."""

from xit_dist.tasks.base import DataSource, PairColumns, Task
from xit_dist.tasks.mnli import NLI_LABELS, mnli_source

ANLI_SCHEMA = {
    "uid": "string",
    "premise": "string",
    "hypothesis": "string",
    "label": ("classlabel", NLI_LABELS),
    "reason": "string",
}
SNLI_SCHEMA = {"premise": "string", "hypothesis": "string", "label": ("classlabel", NLI_LABELS)}
NLI_COLUMNS = PairColumns(text_a="premise", text_b="hypothesis", label="label")
ANLI_ROUNDS = (1, 2, 3)
EVAL_ROUND = 3


def anli_source(split: str) -> DataSource:
    """``split``: train_r1..3, dev_r1..3, test_r1..3."""
    return DataSource("facebook/anli", "plain_text", split, NLI_COLUMNS, ANLI_SCHEMA)


def snli_source(split: str) -> DataSource:
    return DataSource("stanfordnlp/snli", "plain_text", split, NLI_COLUMNS, SNLI_SCHEMA)


def _eval_source(split: str, lang: str) -> DataSource:
    return anli_source(f"{'dev' if split == 'validation' else 'test'}_r{EVAL_ROUND}")


ANLI_PLUS = Task(
    name="anli_plus",
    format="pair_classification",
    description="ANLI R1-R3 + SNLI + MNLI under one NLI head (facebook/anli and stanfordnlp/snli, config plain_text; "
    "nyu-mll/glue mnli); "
    f"evaluates on ANLI round {EVAL_ROUND}.",
    label_names=NLI_LABELS,
    languages=("en",),
    train=(*(anli_source(f"train_r{r}") for r in ANLI_ROUNDS), snli_source("train"), mnli_source("train")),
    dev=anli_source(f"dev_r{EVAL_ROUND}"),
    eval_source=_eval_source,
)
