"""CCG supertagging on CCGbank: one of the paper's nine intermediate tasks (via jiant), English
only, scored by word accuracy (jiant's metric for it).

CCGbank is licensed by the LDC (LDC2005T13): there is no hub copy, and it cannot ship here. Give
the files jiant's CCG task reads, in jiant's layout, and point ``data.task_files.ccg`` (or
``--data-files``) at their directory (the files may also sit in a ``ccg/`` folder under it):

- ``ccg.train``, ``ccg.dev``, ``ccg.test``: UTF-8, one sentence per line,
  ``<words separated by spaces><TAB><supertags separated by spaces>``, one supertag per word,
  e.g. ``Vinken , 61 years old<TAB>N , N/N N (S[adj]\\NP)\\NP``. No header; blank lines skipped.
- ``tags_to_id.json`` (optional): ``{"supertag": id, ...}`` with ids below 1363, jiant's tag
  vocabulary. Without it, the vocabulary is built from the tags of all three files, most
  frequent first (ties by name), so train, dev and test share one id per tag.

The head has jiant's 1363 outputs (the number of supertags in its CCGbank vocabulary): the
tag set comes from the user's files, so the label names are the ids; ``xit-dist data ccg``
shows the supertags as written. The intermediate head is dropped before the target task
anyway; only the encoder transfers.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from xit_dist.errors import DataError
from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.formats.token_tagging import TaggingColumns

CCG_NUM_TAGS = 1363  # jiant's CCGTask.num_labels
CCG_LABELS = tuple(str(i) for i in range(CCG_NUM_TAGS))
CCG_FILES = {"train": "ccg.train", "validation": "ccg.dev", "test": "ccg.test"}
TAG_VOCABULARY_FILE = "tags_to_id.json"
SUBFOLDER = "ccg"  # jiant's data directory keeps the files in ccg/
UNKNOWN_TAG = -1  # a supertag missing from tags_to_id.json (the format drops the sentence and says why)
CCG_SCHEMA = {"tokens": ["string"], "supertags": ["string"], "supertag_ids": ["int32"]}
CCG_COLUMNS = TaggingColumns(tokens="tokens", tags="supertag_ids", tag_text="supertags")
MISSING_HINT = (
    "CCGbank is licensed by the LDC (LDC2005T13) and has no hub copy: put jiant's CCG files "
    f"({', '.join(CCG_FILES.values())}, optionally {TAG_VOCABULARY_FILE}) in a directory and point "
    "data.task_files.ccg (or --data-files) at it"
)


def read_ccg_split(directory, source: DataSource):
    """``DataSource.reader``: one split of the user's CCG files as rows in ``CCG_SCHEMA``."""
    import datasets

    from xit_dist.data.hub_schema import hub_features

    folder = ccg_folder(Path(directory))
    vocabulary = tag_vocabulary(folder)
    sentences = _read_sentences(folder / CCG_FILES[source.split])
    columns = {
        "tokens": [words for words, _ in sentences],
        "supertags": [tags for _, tags in sentences],
        "supertag_ids": [[vocabulary.get(tag, UNKNOWN_TAG) for tag in tags] for _, tags in sentences],
    }
    return datasets.Dataset.from_dict(columns, features=hub_features(CCG_SCHEMA))


def ccg_folder(directory: Path) -> Path:
    """``directory`` or its ``ccg/`` folder, whichever holds the training file."""
    for folder in (directory, directory / SUBFOLDER):
        if (folder / CCG_FILES["train"]).is_file():
            return folder
    raise DataError(f"{directory}: no {CCG_FILES['train']} here or in {SUBFOLDER}/. {MISSING_HINT}")


def tag_vocabulary(folder: Path) -> dict[str, int]:
    """Supertag -> id: ``tags_to_id.json`` if given, else built from the files (see the module doc)."""
    path = folder / TAG_VOCABULARY_FILE
    if path.is_file():
        try:
            vocabulary = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise DataError(f"{path}: not valid JSON: {err}") from None
        if not isinstance(vocabulary, dict) or not all(
            isinstance(tag, str) and isinstance(i, int) and 0 <= i < CCG_NUM_TAGS for tag, i in vocabulary.items()
        ):
            raise DataError(f"{path}: expected {{\"supertag\": id}} with integer ids in 0..{CCG_NUM_TAGS - 1}")
        if len(set(vocabulary.values())) != len(vocabulary):
            raise DataError(f"{path}: two supertags share an id")
        return vocabulary
    counts: Counter = Counter()
    for name in CCG_FILES.values():
        if (folder / name).is_file():
            counts.update(tag for _, tags in _read_sentences(folder / name) for tag in tags)
    if len(counts) > CCG_NUM_TAGS:
        raise DataError(
            f"{folder}: {len(counts)} distinct supertags, more than the head's {CCG_NUM_TAGS}; "
            f"give a {TAG_VOCABULARY_FILE} that maps the ones to keep"
        )
    ordered = sorted(counts, key=lambda tag: (-counts[tag], tag))
    return {tag: i for i, tag in enumerate(ordered)}


def _read_sentences(path: Path) -> list[tuple[list[str], list[str]]]:
    if not path.is_file():
        raise DataError(f"{path}: not found. {MISSING_HINT}")
    sentences = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) != 2:
                raise DataError(f"{path}: line {number}: expected '<words><TAB><supertags>', found {len(fields) - 1} tabs")
            sentences.append((fields[0].split(), fields[1].split()))
    return sentences


def ccg_source(split: str, lang: str = "en") -> DataSource:
    # No hub id exists; the name says why wherever a message names the source.
    return DataSource("CCGbank (LDC-licensed)", None, split, CCG_COLUMNS, CCG_SCHEMA, reader=read_ccg_split)


CCG = Task(
    name="ccg",
    format="token_tagging",
    description="CCG supertagging on CCGbank (LDC-licensed: user-supplied files in jiant's format); English, word accuracy.",
    label_names=CCG_LABELS,
    languages=("en",),
    train=ccg_source("train"),
    dev=ccg_source("validation"),
    eval_source=ccg_source,
    metric="accuracy",
)
