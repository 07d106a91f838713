"""LAReQA (XTREME-R): language-agnostic answer retrieval on XQuAD-R. Every question is asked
against ONE multilingual pool of candidate answer sentences (every sentence of every paragraph,
in all languages); its relevant candidates are the sentences holding its answer in each
language (11 per question, the data set being 11-way parallel). Metric: mAP@20. The task's
average is one mean over the questions of all languages, as ``utils_lareqa.mean_avg_prec_at_k``
computes it (``Task.average = "queries"``: per-language mAPs weighted by their question counts),
not a mean of per-language means; the two differ when languages keep different numbers of
questions (``max_examples_per_language``, questions skipped for their sentence breaks).

Read from the release files, because the hub's ``xquad_r`` is loading-script only (and drops
the sentence breaks the task needs). Layout, as XTREME-R's ``download_lareqa_data.sh`` writes it
(point ``data.task_files.lareqa`` at the folder holding ``lareqa/xquad-r/``, at ``xquad-r/``'s
parent, or at ``xquad-r/`` itself)::

    lareqa/xquad-r/<lang>.json   # SQuAD format, each paragraph with "sentence_breaks": [[start, end], ...]

Rows follow XTREME-R's ``utils_lareqa.load_data``: candidates are ``<lang>_<paragraph
number>_<sentence position>``; a question's uid is ``<qas id>_<lang>``; its relevant candidates
are the sentences (in every language's file) whose text equals the sentence containing its
answer start; questions whose answer start lies in no sentence are skipped, as there. A
candidate is embedded as sentence + paragraph text, as XTREME-R's retrieval script encodes it.
The pool is every ``<lang>.json`` present, so a partial copy gives a smaller pool. XQuAD-R has
one split; ``validation`` and ``test`` both read it.

No training data: evaluated straight from an encoder (``retrieval`` format), with
``evaluation.pooling`` and one ``max_seq_length`` for both sides. XTREME-R's baseline instead
fine-tunes a dual encoder on SQuAD first (``train_lareqa.sh``) and pools CLS with 96 question /
256 answer tokens, so scores here are not comparable with its published LAReQA numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

from xit_dist.errors import DataError
from xit_dist.tasks.base import DataSource
from xit_dist.tasks.retrieval_rows import SOURCE, TARGET, prefix_friendly_order, release_dir, release_retrieval_task, row, rows_dataset


def _parse_language(path: Path, lang: str, part: str):
    """(questions [(uid, question, xling_id, ids of the candidates equal to its answer sentence)],
    candidate rows) of one language file."""
    try:
        return _parse_squad_r(json.loads(path.read_text(encoding="utf-8"))["data"], path, lang, part)
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise DataError(f"{path}: not XQuAD-R JSON ({type(err).__name__}: {err})") from None


def _parse_squad_r(data, path: Path, lang: str, part: str):
    questions, candidates = [], []
    paragraph_number = 0
    for passage in data:
        for paragraph in passage["paragraphs"]:
            paragraph_number += 1
            context = paragraph["context"]
            if "sentence_breaks" not in paragraph:
                raise DataError(f"{path}: paragraph {paragraph_number} has no sentence_breaks (use the XQuAD-R release, not XQuAD)")
            breaks = paragraph["sentence_breaks"]
            sentences = [str(context[start:end]) for start, end in breaks]
            ids = [f"{lang}_{paragraph_number}_{position}" for position in range(len(sentences))]
            candidates += [row(i, (sentence + context).replace("\n", ""), TARGET, part) for i, sentence in zip(ids, sentences)]
            for qa in paragraph["qas"]:
                if len(qa["answers"]) != 1:
                    raise DataError(f"{path}: question {qa['id']} has {len(qa['answers'])} answers (XQuAD-R has exactly one)")
                start = qa["answers"][0]["answer_start"]
                answer = next((context[s:e] for s, e in breaks if s <= start < e), None)
                if answer is not None:
                    same = [i for i, sentence in zip(ids, sentences) if sentence == answer]
                    questions.append((f"{qa['id']}_{lang}", qa["question"], qa["id"], same))
    return questions, candidates


def read_lareqa(directory, source: DataSource):
    folder = release_dir(directory, source, ("lareqa/xquad-r", "xquad-r", ""), marker=f"{source.language}.json")
    part = source.split
    relevant_by_xling: dict[str, list[str]] = {}
    own_questions, pool = [], []
    for path in sorted(folder.glob("*.json")):
        lang = path.stem
        questions, candidates = _parse_language(path, lang, part)
        pool += candidates
        for uid, question, xling_id, answer_ids in questions:
            relevant_by_xling.setdefault(xling_id, []).extend(answer_ids)
            if lang == source.language:
                own_questions.append((uid, question, xling_id))
    sources = [row(uid, question, SOURCE, part, relevant_by_xling[xling]) for uid, question, xling in own_questions]
    return rows_dataset(prefix_friendly_order(sources, pool))


# average "queries": utils_lareqa.mean_avg_prec_at_k takes one mean over all questions of all languages
LAREQA = release_retrieval_task(
    "lareqa", config="xquad-r", reader=read_lareqa, average="queries",
    description="LAReQA on XQuAD-R (release files; the hub copy is loading-script only): questions against "
    "a multilingual pool of answer sentences, no training, mAP@20.",
)
