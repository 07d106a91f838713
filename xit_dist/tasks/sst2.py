"""SST-2 (GLUE): binary sentiment of single sentences; one of the paper's intermediate tasks.
English only; GLUE's test labels are hidden (-1), so 'test' evaluates on validation."""

from xit_dist.tasks.base import DataSource, PairColumns, Task

SST2_LABELS = ("negative", "positive")  # GLUE's ClassLabel order
SST2_SCHEMA = {"sentence": "string", "label": ("classlabel", SST2_LABELS), "idx": "int32"}
SST2_COLUMNS = PairColumns(text_a="sentence", text_b=None, label="label")


def _source(split: str) -> DataSource:
    return DataSource("nyu-mll/glue", "sst2", split, SST2_COLUMNS, SST2_SCHEMA)


SST2 = Task(
    name="sst2",
    format="pair_classification",
    description="Stanford Sentiment Treebank, binary (nyu-mll/glue, config sst2); English only; 'test' evaluates on validation.",
    label_names=SST2_LABELS,
    languages=("en",),
    train=_source("train"),
    dev=_source("validation"),
    eval_source=lambda split, lang: _source("validation"),
)
