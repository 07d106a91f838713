"""Rows of the retrieval tasks that are read from release files (BUCC, LAReQA, Mewsli-X).

Their hub copies are unusable (BUCC's has no distractor sentences; XQuAD-R and Mewsli-X are
loading-script only), so each task's reader turns the original files into one row per
sentence in ``RELEASE_SCHEMA``:

- ``id``: the sentence's id in the release (``de-000000081``, a question uid, a WikiData QID);
- ``text``: what is embedded (already composed as the benchmark's baseline composes it);
- ``side``: ``source`` (the language's sentences, questions, mentions) or ``target`` (English
  sentences, candidate answers, candidate entities);
- ``part``: the subset a row belongs to (BUCC evaluates ``test`` and carries ``dev`` along to
  choose its threshold; every other task has one part);
- ``relevant``: on source rows, the ids of the target rows that are its gold matches.

Rows come in an order whose prefixes are still meaningful evaluation sets, because
``evaluation.max_examples_per_language`` keeps the first N rows: each source sentence comes
right after its gold targets and before one other target (``prefix_friendly_order``), so no
prefix holds a query without its gold (which would score 0, as a gold missing from the
candidates does).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from itertools import zip_longest
from pathlib import Path
from typing import Callable

from xit_dist.errors import DataError
from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.languages import task_languages

RELEASE_SCHEMA: dict[str, object] = {"id": "string", "text": "string", "side": "string", "part": "string", "relevant": ["string"]}
SOURCE, TARGET = "source", "target"


@dataclass(frozen=True)
class RetrievalColumns:
    """Where a retrieval task's sentences are. ``pair`` names the two columns of a hub row that
    holds one parallel pair (Tatoeba: source_sentence in the language, target_sentence in
    English); ``None`` means the rows are single sentences in ``RELEASE_SCHEMA``."""

    pair: tuple[str, str] | None = None


def release_retrieval_task(
    name: str,
    *,
    description: str,
    config: str | Callable[[str], str],
    reader: Callable,
    metric: str = "map_at_20",
    benchmark: str = "xtreme-r",
    average: str = "languages",
    hub_id: str | None = None,
) -> Task:
    """A retrieval task read from release files: evaluation only (no train or dev data); each
    language's rows of a split come from ``reader`` in ``RELEASE_SCHEMA``. ``hub_id`` (by default
    the task's name) and ``config`` (fixed, or per language) only name the data set in messages
    and caches. The defaults are XTREME-R's (LAReQA, Mewsli-X)."""
    return Task(
        name=name,
        format="retrieval",
        description=description,
        label_names=(),
        languages=task_languages(name, benchmark),
        train=None,
        dev=None,
        eval_source=partial(release_source, hub_id or name, config, reader),
        metric=metric,
        average=average,
        benchmarks=(benchmark,),
    )


def release_source(hub_id: str, config: str | Callable[[str], str], reader: Callable, split: str, lang: str) -> DataSource:
    """One language's evaluation rows of a task read from release files."""
    config_name = config(lang) if callable(config) else config
    return DataSource(hub_id, config_name, split, RetrievalColumns(), RELEASE_SCHEMA, language=lang, reader=reader)


def row(id_: str, text: str, side: str, part: str, relevant: list[str] | None = None) -> dict:
    return {"id": id_, "text": text, "side": side, "part": part, "relevant": list(relevant or [])}


def release_dir(directory, source, layouts: tuple[str, ...], marker: str) -> Path:
    """The first ``directory/<layout>`` that holds ``marker``: a user may point at the folder
    the release unpacks to or at its parent (a local mirror root holds e.g. ``bucc2018/``)."""
    root = Path(directory)
    for layout in layouts:
        candidate = root / layout if layout else root
        if (candidate / marker).is_file():
            return candidate
    tried = ", ".join(str((root / layout if layout else root) / marker) for layout in layouts)
    hint = f"; {source.release_hint}" if source.release_hint else ""
    raise DataError(f"{source.describe()}: release file not found (tried {tried}){hint}")


def read_tsv(path: Path, columns: int = 2) -> list[list[str]]:
    """Tab-separated release lines (``id<TAB>sentence``, gold ``id<TAB>id``); one clear line per bad row."""
    if not path.is_file():
        raise DataError(f"{path}: not found")
    out = []
    with open(path, encoding="utf-8", newline="\n") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line:
                continue
            fields = line.split("\t", columns - 1)
            if len(fields) != columns:
                raise DataError(f"{path}:{number}: expected {columns} tab-separated fields, got {len(fields)}")
            out.append(fields)
    return out


def prefix_friendly_order(sources: list[dict], targets: list[dict]) -> list[dict]:
    """Each source row's gold targets not yet placed, then the source, then one other target;
    the remaining targets last. Any prefix keeps every source with all its gold, and some
    distractors."""
    position = {target["id"]: i for i, target in enumerate(targets)}
    placed = [False] * len(targets)
    next_other = 0
    ordered = []
    for source in sources:
        for gold in source["relevant"]:
            i = position.get(gold)
            if i is not None and not placed[i]:
                placed[i] = True
                ordered.append(targets[i])
        ordered.append(source)
        while next_other < len(targets) and placed[next_other]:
            next_other += 1
        if next_other < len(targets):
            placed[next_other] = True
            ordered.append(targets[next_other])
    ordered.extend(target for i, target in enumerate(targets) if not placed[i])
    return ordered


def round_robin(*orders: list[dict]) -> list[dict]:
    """Interleave several ordered row lists (BUCC's dev and test parts), so a prefix holds both."""
    return [item for group in zip_longest(*orders) for item in group if item is not None]


def rows_dataset(rows: list[dict]):
    """Release rows -> a `datasets.Dataset` in ``RELEASE_SCHEMA`` (the loader conforms it)."""
    from datasets import Dataset

    from xit_dist.data.hub_schema import hub_features

    columns = {name: [r[name] for r in rows] for name in RELEASE_SCHEMA}
    return Dataset.from_dict(columns, features=hub_features(RELEASE_SCHEMA))
