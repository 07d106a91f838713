"""Tatoeba (XTREME, XTREME-R): up to 1,000 English sentences and their translations per
language, hub configs ``tatoeba.<iso3>`` of ``google/xtreme`` (columns source_sentence in the
language, target_sentence in English, source_lang, target_lang). The hub has one split,
``validation``; XTREME reports it as the test score, so both splits read it.

No training data: evaluated straight from an encoder (the ``retrieval`` format), scored by
top-1 accuracy of cosine nearest-neighbour search. The XTREME-R languages beyond XTREME's
(az, lt, pl, uk, ro) have no hub config; give them as a local mirror
(``<dir>/google/xtreme/tatoeba.<iso3>/validation.jsonl``) from the XTREME-R release.
"""

from xit_dist.errors import SpecError
from xit_dist.tasks.base import DataSource, Task, mirror_only_hint
from xit_dist.tasks.languages import task_languages
from xit_dist.tasks.retrieval_rows import RetrievalColumns

# ISO 639-1 -> the ISO 639-3 code in the hub config / release file name (Persian is "pes",
# Swahili "swh", Chinese "cmn", as in XTREME's files).
TATOEBA_ISO3: dict[str, str] = {
    "af": "afr", "ar": "ara", "az": "aze", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa",
    "et": "est", "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin", "hu": "hun",
    "id": "ind", "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz", "ko": "kor", "lt": "lit",
    "ml": "mal", "mr": "mar", "nl": "nld", "pl": "pol", "pt": "por", "ro": "ron", "ru": "rus", "sw": "swh",
    "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl", "tr": "tur", "uk": "ukr", "ur": "urd", "vi": "vie",
    "zh": "cmn",
}
TATOEBA_SCHEMA = {"source_sentence": "string", "target_sentence": "string", "source_lang": "string", "target_lang": "string"}
TATOEBA_COLUMNS = RetrievalColumns(pair=("source_sentence", "target_sentence"))
XTREME_R_HINT = mirror_only_hint(
    "tatoeba", "XTREME-R's Tatoeba additions (az lt pl ro uk)",
    "take tatoeba.<iso3>-eng.{<iso3>,eng} from data/tatoeba/v1 of https://github.com/facebookresearch/LASER",
    "google/xtreme/tatoeba.<iso3>/validation.jsonl",
)
XTREME_R_ONLY = set(task_languages("tatoeba", "xtreme-r")) - set(task_languages("tatoeba"))  # no google/xtreme config


def _eval_source(split: str, lang: str) -> DataSource:
    if lang not in TATOEBA_ISO3:
        raise SpecError(f"tatoeba: no Tatoeba data for language {lang!r}")
    # The hub's only split serves as XTREME's test set (and as validation).
    hint = XTREME_R_HINT if lang in XTREME_R_ONLY else None
    config = f"tatoeba.{TATOEBA_ISO3[lang]}"
    return DataSource("google/xtreme", config, "validation", TATOEBA_COLUMNS, TATOEBA_SCHEMA, release_hint=hint)


TATOEBA = Task(
    name="tatoeba",
    format="retrieval",
    description="Tatoeba parallel sentence retrieval (google/xtreme, tatoeba.<iso3>); no training, "
    "English queries against the language's sentences, top-1 accuracy.",
    label_names=(),
    languages=task_languages("tatoeba"),
    languages_xtreme_r=task_languages("tatoeba", "xtreme-r"),
    train=None,
    dev=None,
    eval_source=_eval_source,
    metric="accuracy",
    benchmarks=("xtreme", "xtreme-r"),
)
