"""UD-POS (XTREME): universal part-of-speech tags, 17 classes, from Universal Dependencies;
trains on English (``udpos.English`` train), scored with seqeval F1 as XTREME does.

Hub: ``google/xtreme`` configs ``udpos.<English name of the language>`` (``udpos.German``...),
built from the UD v2.5 .conllu files of every treebank of the language. Not every language has
every split: Kazakh has train and test, Tagalog, Thai and Yoruba test only (XTREME evaluates on
test). The hub holds XTREME's 33 languages; XTREME-R adds Lithuanian, Polish, Romanian, Ukrainian
and Wolof (from UD v2.7), which are not on the hub: put them in a local mirror under the config
names below (``<dir>/google/xtreme/udpos.Polish/test.jsonl`` in this schema) and point
``data.task_files.udpos`` at it.
"""

from xit_dist.errors import SpecError
from xit_dist.tasks.base import DataSource, Task, mirror_only_hint
from xit_dist.tasks.formats.token_tagging import TaggingColumns
from xit_dist.tasks.languages import task_languages

# The hub's ClassLabel order (alphabetical UPOS).
UPOS_TAGS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)
UDPOS_SCHEMA = {"tokens": ["string"], "pos_tags": [("classlabel", UPOS_TAGS)]}
UDPOS_COLUMNS = TaggingColumns(tokens="tokens", tags="pos_tags")

# ISO 639-1 code -> the language name in the hub's config (``udpos.<name>``); the last five are
# XTREME-R's additions (local mirror only).
UDPOS_CONFIG_LANGUAGE = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek", "en": "English",
    "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian", "fi": "Finnish", "fr": "French",
    "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese",
    "kk": "Kazakh", "ko": "Korean", "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian",
    "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
    "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
    "lt": "Lithuanian", "pl": "Polish", "ro": "Romanian", "uk": "Ukrainian", "wo": "Wolof",
}


XTREME_R_HINT = mirror_only_hint(
    "udpos", "XTREME-R's UD-POS additions (lt pl ro uk wo, UD v2.7)",
    "convert the UD v2.7 treebanks (https://lindat.mff.cuni.cz/repository/xmlui/handle/11234/1-3424) as "
    "XTREME-R's scripts/download_data.sh does",
    "google/xtreme/udpos.<Language>/<split>.jsonl",
)
XTREME_R_ONLY = set(task_languages("udpos", "xtreme-r")) - set(task_languages("udpos"))  # no google/xtreme config


def udpos_source(split: str, lang: str) -> DataSource:
    try:
        config = f"udpos.{UDPOS_CONFIG_LANGUAGE[lang]}"
    except KeyError:
        raise SpecError(f"udpos has no language {lang!r}; known: {', '.join(sorted(UDPOS_CONFIG_LANGUAGE))}") from None
    hint = XTREME_R_HINT if lang in XTREME_R_ONLY else None
    return DataSource("google/xtreme", config, split, UDPOS_COLUMNS, UDPOS_SCHEMA, release_hint=hint)


UDPOS = Task(
    name="udpos",
    format="token_tagging",
    description="Universal POS tagging (google/xtreme, udpos.<Language>, UD v2.5); trains on English, seqeval F1.",
    label_names=UPOS_TAGS,
    languages=task_languages("udpos"),
    languages_xtreme_r=task_languages("udpos", "xtreme-r"),
    train=udpos_source("train", "en"),
    dev=udpos_source("validation", "en"),
    eval_source=udpos_source,
    metric="f1",
    benchmarks=("xtreme", "xtreme-r"),
)
