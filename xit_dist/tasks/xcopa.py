"""XCOPA (XTREME-R): causal commonsense in 11 languages (``cambridgeltl/xcopa``, one config per
language, validation and test only): given a premise and whether its cause or its effect is
asked for, pick the more plausible of two alternatives.

English training data: COPA from SuperGLUE (``aps/super_glue``, config ``copa``: 400 train,
100 validation, 500 test with hidden labels, ``label`` a ClassLabel choice1/choice2; the hub
moved the old ``super_glue`` id there). XTREME-R's baseline trains on SIQA first and then on
COPA; SIQA is not a registered task here, so this task trains on COPA alone (add an
intermediate phase for a SIQA-like first stage).

Input recipe: the question becomes a connective closing the context ("<premise> because" for
cause, "<premise> so" for effect), the alternative is the second segment. The ``question``
field is English ("cause"/"effect") in every XCOPA config, so the connective is the English
word in every language.

Languages: the benchmark's 11 (``languages_xtreme_r``) plus English, which XCOPA itself does
not have: 'en' evaluates COPA's validation split (its test labels are hidden), so runs report a
transfer gap; the XTREME-R score averages the 11 only.
"""

from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.choice_columns import ChoiceColumns
from xit_dist.tasks.languages import task_languages

XCOPA_LANGUAGES = task_languages("xcopa", "xtreme-r")
COPA_LABELS = ("choice1", "choice2")
CONNECTIVES = (("cause", "because"), ("effect", "so"))
XCOPA_SCHEMA = {
    "premise": "string",
    "choice1": "string",
    "choice2": "string",
    "question": "string",
    "label": "int32",
    "idx": "int32",
    "changed": "bool",
}
COPA_SCHEMA = {
    "premise": "string",
    "choice1": "string",
    "choice2": "string",
    "question": "string",
    "idx": "int32",
    "label": ("classlabel", COPA_LABELS),
}
COPA_COLUMNS = ChoiceColumns(
    context=("premise",), choices=COPA_LABELS, label="label", question="question", connectives=CONNECTIVES
)


def copa_source(split: str) -> DataSource:
    return DataSource("aps/super_glue", "copa", split, COPA_COLUMNS, COPA_SCHEMA)


def _eval_source(split: str, lang: str) -> DataSource:
    if lang == "en":
        return copa_source("validation")
    return DataSource("cambridgeltl/xcopa", lang, split, COPA_COLUMNS, XCOPA_SCHEMA)


XCOPA = Task(
    name="xcopa",
    format="multiple_choice",
    description="Cross-lingual Choice of Plausible Alternatives (cambridgeltl/xcopa, configs <lang>); "
    "trains on SuperGLUE COPA (aps/super_glue, copa); 'en' evaluates COPA validation.",
    label_names=COPA_LABELS,
    languages=("en", *XCOPA_LANGUAGES),
    train=copa_source("train"),
    dev=copa_source("validation"),
    eval_source=_eval_source,
    languages_xtreme_r=XCOPA_LANGUAGES,
    benchmarks=("xtreme-r",),
)
