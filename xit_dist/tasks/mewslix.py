"""Mewsli-X (XTREME-R): entity linking as retrieval. Each WikiNews mention (11 languages) is
matched against one fixed multilingual candidate set of entity descriptions; its single
relevant candidate is its gold WikiData QID. Metric: mAP@20 (with one relevant item, the
reciprocal rank within the top 20: the MRR@20 XTREME-R reports). As ``utils_mewslix.evaluate``,
a mention whose gold entity is not among the candidates scores 0 and counts in the mean, and
the task's average is the mean over languages (``evaluate_all``'s macro average).

Read from the release files, because the hub copies are loading-script only. Layout, as the
Mewsli-X ``get-mewsli-x.sh`` script (or XTREME-R's ``download_mewslix_data.sh``) leaves it; point
``data.task_files.mewslix`` at the folder holding ``mewslix/`` or at ``mewslix/`` itself::

    mewslix/candidate_set_entities.jsonl        # one Entity per line: entity_id, title, description, sentence_spans, ...
    mewslix/wikinews_mentions-{dev,test}.jsonl  # one article per line: {"context": {..., "language", "text",
                                                #   "sentence_spans"}, "mentions": [{example_id, entity_id, mention_span}]}

``validation`` reads the dev mentions, ``test`` the test mentions. The released
``wikinews_mentions_no_text-*`` files have no article text; run the download script that fills it
in. Texts are composed as XTREME-R's baseline does (``utils_mewslix``): a mention is
``"<mention>: <its sentence, with the mention marked { like this }>"``, an entity its description
sentences joined. The full candidate set has ~1M entities, which are embedded again for each
evaluated language (the format scores one language at a time): expect minutes per language on a GPU.

No training data: evaluated straight from an encoder (``retrieval`` format). XTREME-R's
baseline first fine-tunes a dual encoder on the English ``wikipedia_pairs-train.jsonl``, so
scores here are not comparable with its published Mewsli-X numbers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from xit_dist.errors import DataError
from xit_dist.tasks.base import DataSource
from xit_dist.tasks.retrieval_rows import SOURCE, TARGET, prefix_friendly_order, release_dir, release_retrieval_task, row, rows_dataset

CANDIDATES_FILE = "candidate_set_entities.jsonl"
MENTIONS_FILE = {"validation": "wikinews_mentions-dev.jsonl", "test": "wikinews_mentions-test.jsonl"}
# XTREME-R's markup of a mention in its sentence; pre-existing {...} in the text become (...).
MARKER_LEFT, MARKER_RIGHT = "{", "}"
_MARKED = re.compile(rf"{re.escape(MARKER_LEFT)}(.*?){re.escape(MARKER_RIGHT)}")


def _normalise_space(text: str) -> str:
    return " ".join(text.splitlines()).replace("  ", " ").strip()


def mention_text(context: dict, mention: dict) -> str | None:
    """The mention in its sentence (XTREME-R ``preprocess_mention``), or None if the mention
    crosses sentence boundaries."""
    span = mention["mention_span"]
    start, end = span["start"], span["end"]
    sentence = next(((s["start"], s["end"]) for s in context["sentence_spans"] if s["start"] <= start and end <= s["end"]), None)
    if sentence is None:
        return None
    text = context["text"][sentence[0] : sentence[1]]
    left = _MARKED.sub(r"(\1)", text[: start - sentence[0]])
    right = _MARKED.sub(r"(\1)", text[end - sentence[0] :])
    return _normalise_space(f"{span['text']}: {left} {MARKER_LEFT} {span['text']} {MARKER_RIGHT} {right}")


def entity_text(entity: dict) -> str:
    """An entity's description sentences, joined (XTREME-R ``preprocess_entity_description``)."""
    description = entity["description"]
    return _normalise_space(" ".join(description[s["start"] : s["end"]] for s in entity["sentence_spans"]))


def _jsonl(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: not found")
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except ValueError as err:
                    raise DataError(f"{path}:{number}: not JSON ({err})") from None


def read_mewslix(directory, source: DataSource):
    folder = release_dir(directory, source, ("mewslix", ""), marker=CANDIDATES_FILE)
    part, mentions_path = source.split, folder / MENTIONS_FILE[source.split]
    sources = []
    try:
        for number, article in _jsonl(mentions_path):
            context = article["context"]
            if context["language"] != source.language:
                continue
            if not context["text"]:
                raise DataError(f"{mentions_path}:{number}: article text is empty (a *_no_text release file? run get-mewsli-x.sh)")
            for mention in article["mentions"]:
                text = mention_text(context, mention)
                if text is None:
                    raise DataError(f"{mentions_path}:{number}: mention {mention['example_id']} crosses sentence boundaries")
                sources.append(row(mention["example_id"], text, SOURCE, part, [mention["entity_id"]]))
        targets = [row(entity["entity_id"], entity_text(entity), TARGET, part) for _, entity in _jsonl(folder / CANDIDATES_FILE)]
    except (KeyError, TypeError) as err:
        raise DataError(f"{folder}: not in the Mewsli-X release format ({type(err).__name__}: {err})") from None
    return rows_dataset(prefix_friendly_order(sources, targets))


MEWSLIX = release_retrieval_task(
    "mewslix", config="wikinews", reader=read_mewslix,
    description="Mewsli-X entity retrieval (release files; the hub copy is loading-script only): WikiNews "
    "mentions against a multilingual entity candidate set, no training, mAP@20.",
)
