"""XQuAD (XTREME): 1190 SQuAD v1.1 dev questions translated into 10 languages (11 in XTREME,
12 with Romanian in XTREME-R), configs ``XQuAD.<lang>`` of google/xtreme. The hub has only a
validation split, so 'validation' and 'test' both read it; the English training data is SQuAD
v1.1, as XTREME defines it. Scored with the SQuAD v1.1 script.

Romanian is not on the hub: google/xtreme's configs are ``XQuAD.{ar,de,el,en,es,hi,ru,th,tr,vi,
zh}``. XTREME-R's ``ro`` is ``xquad.ro.json``, added later to the XQuAD release
(github.com/google-deepmind/xquad, SQuAD v1.1 JSON; part of the LiRo benchmark). It is read as
the other release-only sets are: from the task's directory (``data.task_files.xquad``,
``data.local_dir`` or ``--data-files``), directly or under ``xquad/`` or
``google-deepmind/xquad/``. That directory is the task's, so with ``data.task_files.xquad`` the
other languages (and SQuAD, the training data) are read from it too, in the mirror layout; a
full local mirror with the file at ``google-deepmind/xquad/xquad.ro.json`` serves all of them.
"""

import json
from pathlib import Path

from xit_dist.errors import DataError
from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.languages import task_languages
from xit_dist.tasks.retrieval_rows import release_dir
from xit_dist.tasks.squad import SQUAD_COLUMNS, XQUAD_SCHEMA, squad_source

RELEASE = "google-deepmind/xquad"  # the GitHub release, not a hub data set
RELEASE_ONLY = {"ro": "xquad.ro.json"}  # XTREME-R's addition; no google/xtreme config
RO_HINT = (
    "Romanian XQuAD (XTREME-R) is not on the hub: download xquad.ro.json from https://github.com/google-deepmind/xquad "
    "and point data.task_files.xquad (or --data-files) at its directory, or put it in the local mirror as "
    f"{RELEASE}/xquad.ro.json"
)


def read_xquad_release(directory, source: DataSource):
    """``DataSource.reader``: an XQuAD release file (SQuAD v1.1 JSON) as rows in ``XQUAD_SCHEMA``."""
    import datasets

    from xit_dist.data.hub_schema import hub_features

    path = release_dir(directory, source, ("", "xquad", RELEASE), marker=source.config) / source.config
    try:
        articles = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
        rows = [
            {
                "id": qa["id"],
                "context": paragraph["context"],
                "question": qa["question"],
                "answers": {"answer_start": [a["answer_start"] for a in qa["answers"]], "text": [a["text"] for a in qa["answers"]]},
            }
            for article in articles
            for paragraph in article["paragraphs"]
            for qa in paragraph["qas"]
        ]
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not SQuAD v1.1 JSON ({type(err).__name__}: {err})") from None
    return datasets.Dataset.from_list(rows, features=hub_features(XQUAD_SCHEMA))


def _eval_source(split: str, lang: str) -> DataSource:
    if lang in RELEASE_ONLY:
        return DataSource(
            RELEASE, RELEASE_ONLY[lang], "validation", SQUAD_COLUMNS, XQUAD_SCHEMA,
            language=lang, reader=read_xquad_release, release_hint=RO_HINT,
        )
    return DataSource("google/xtreme", f"XQuAD.{lang}", "validation", SQUAD_COLUMNS, XQUAD_SCHEMA)


XQUAD = Task(
    name="xquad",
    format="extractive_qa",
    description="Cross-lingual QA (google/xtreme, XQuAD.<lang>, validation only: 'test' reads it too; "
    "XTREME-R's ro from the release file xquad.ro.json); trains on SQuAD v1.1.",
    label_names=(),
    languages=task_languages("xquad"),
    languages_xtreme_r=task_languages("xquad", "xtreme-r"),
    train=squad_source("train"),
    dev=_eval_source("validation", "en"),
    eval_source=_eval_source,
    metric="f1",
    benchmarks=("xtreme", "xtreme-r"),
)
