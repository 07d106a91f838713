"""Official XTREME / XTREME-R metrics, re-implemented from their definitions.

Every score is on a 0-100 scale. Each function names the official script whose
behaviour it reproduces, including the quirks that change numbers, so results
stay comparable with published XTREME / XTREME-R tables:

* ``accuracy``            XTREME ``evaluate.py: accuracy`` (XNLI, PAWS-X, XCOPA...)
* ``qa_scores``           SQuAD ``evaluate-v1.1.py`` (XQuAD, TyDiQA-GoldP) and
                          MLQA ``mlqa_evaluation_v1.py`` (MLQA)
* ``squad_v2_scores``     SQuAD ``evaluate-v2.0.py`` (the ``squad_v2`` intermediate task)
* ``tagging_f1``          ``seqeval.metrics.f1_score`` (UD-POS and PAN-X)
* ``bucc_f1``/``best_threshold``  XTREME ``third_party/utils_retrieve.py``
                          (``bucc_extract`` / ``bucc_optimize``, from LASER)
* ``retrieval_accuracy``  Tatoeba top-1 accuracy
* ``map_at_k``            XTREME-R ``utils_lareqa.average_precision_at_k``
                          (LAReQA) and ``utils_mewslix`` MRR@20 (Mewsli-X)
* aggregation helpers     XTREME ``evaluate.py: evaluate``; ``pooled_average`` for
                          XTREME-R ``utils_lareqa.mean_avg_prec_at_k`` (one mean
                          over the questions of all languages)
* ``mean_std``            mean and sample std over seeds (report tables, MLflow summary runs)
* ``metric_library_versions``  versions of the libraries that compute a metric
                          (seqeval), recorded with every result
"""

from __future__ import annotations

import re
import string
import unicodedata
import warnings
from collections import Counter
from typing import Mapping, Sequence

import numpy as np

# Part of every cached evaluation's key: bump it when a metric's definition changes, so results
# computed by the old definition are not reused (2: the official SQuAD v2.0, BUCC, Mewsli-X and
# LAReQA definitions of issue 19).
SCORING_VERSION = "2"

__all__ = [
    "MLQA_LANGUAGES",
    "accuracy",
    "qa_scores",
    "squad_v2_scores",
    "tagging_f1",
    "bucc_f1",
    "best_threshold",
    "retrieval_accuracy",
    "map_at_k",
    "transfer_gap",
    "language_average",
    "pooled_average",
    "metric_library_versions",
    "qa_task_score",
    "task_score",
    "benchmark_score",
]


# --------------------------------------------------------------------------- #
# validation helpers
# --------------------------------------------------------------------------- #
def _check_nonempty(name: str, obj) -> None:
    if len(obj) == 0:
        raise ValueError(f"{name} is empty")


def _check_same_length(name_a: str, a, name_b: str, b) -> None:
    if len(a) != len(b):
        raise ValueError(
            f"length mismatch: {name_a} has {len(a)} items, {name_b} has {len(b)}"
        )


# --------------------------------------------------------------------------- #
# classification
# --------------------------------------------------------------------------- #
def accuracy(gold: Sequence, pred: Sequence) -> float:
    """Percentage of positions where ``pred[i] == gold[i]`` (XTREME evaluate.py)."""
    _check_same_length("gold", gold, "pred", pred)
    _check_nonempty("gold", gold)
    correct = sum(1 for g, p in zip(gold, pred) if g == p)
    return 100.0 * correct / len(gold)


# --------------------------------------------------------------------------- #
# extractive QA
# --------------------------------------------------------------------------- #
_ASCII_PUNCT = frozenset(string.punctuation)

# mlqa_evaluation_v1.py: PUNCT = {every chr(i), i < sys.maxunicode, whose Unicode
# category starts with "P"} | string.punctuation. Testing the category per
# character is the same predicate (U+10FFFF, the only code point the script's
# range() leaves out, is unassigned) without building a 1.1M-entry set at import.
def _is_mlqa_punct(ch: str) -> bool:
    return ch in _ASCII_PUNCT or unicodedata.category(ch).startswith("P")


# Article patterns of mlqa_evaluation_v1.py, verbatim. The Arabic pattern is the
# script's r"\sال^|ال": its first branch can never match ("^" cannot follow
# consumed characters), so in effect EVERY occurrence of "ال" -- also inside a
# word, e.g. "مالك" -> "م ك" -- is replaced by a space. Kept as-is on purpose.
_MLQA_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "hi": None,  # Hindi has no formal articles
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "ar": re.compile(r"\sال^|ال"),
    "zh": None,  # Chinese has no formal articles
}
MLQA_LANGUAGES = tuple(sorted(_MLQA_ARTICLES))
_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")
_CJK = re.compile(r"[\u4e00-\u9fa5]")  # the MLQA script's (narrow) CJK range


def _squad_normalize(text: str) -> str:
    """SQuAD v1.1 normalize_answer: lower -> drop ASCII punct -> drop a/an/the -> squash spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _ASCII_PUNCT)
    text = _SQUAD_ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _mixed_segmentation(text: str) -> list[str]:
    """MLQA zh tokenisation: each CJK char / punctuation mark is a token, other runs split on whitespace."""
    tokens: list[str] = []
    buffer = ""
    for ch in text:
        if _CJK.match(ch) or _is_mlqa_punct(ch):
            tokens.extend(buffer.split())
            buffer = ""
            tokens.append(ch)
        else:
            buffer += ch
    tokens.extend(buffer.split())
    return tokens


def _mlqa_normalize(text: str, lang: str) -> str:
    """MLQA normalize_answer: lower -> drop Unicode punct -> drop articles(lang) -> tokenise and re-join."""
    text = "".join(ch for ch in text.lower() if not _is_mlqa_punct(ch))
    pattern = _MLQA_ARTICLES[lang]
    if pattern is not None:
        text = pattern.sub(" ", text)
    tokens = _mixed_segmentation(text) if lang == "zh" else text.split()
    return " ".join(t for t in tokens if t.strip())


def _token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    """Bag-of-tokens F1 as in both scripts; 0 when nothing is shared (even if both are empty)."""
    num_same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def qa_scores(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    lang: str,
    style: str,
) -> dict[str, float]:
    """Exact match and token F1 (0-100), maximised over each question's gold answers.

    ``style="squad"``: SQuAD v1.1 evaluate script, which XTREME uses for XQuAD and
    TyDiQA-GoldP (``lang`` is then not used for normalisation). ``style="mlqa"``:
    mlqa_evaluation_v1.py with its per-language normalisation; ``lang`` must be
    one of ``MLQA_LANGUAGES``. As in both scripts the average runs over the
    questions in ``references``: a question without a prediction scores 0 (a
    warning is issued, like the scripts' "Unanswered question" message) and
    predictions for ids absent from ``references`` are ignored.
    """
    if style == "squad":
        def normalize(text: str) -> str:
            return _squad_normalize(text)
    elif style == "mlqa":
        if lang not in _MLQA_ARTICLES:
            raise ValueError(
                f"unknown MLQA language {lang!r}; expected one of {MLQA_LANGUAGES}"
            )

        def normalize(text: str) -> str:
            return _mlqa_normalize(text, lang)
    else:
        raise ValueError(f"unknown QA style {style!r}; expected 'squad' or 'mlqa'")
    _check_nonempty("references", references)

    em_total = f1_total = 0.0
    unanswered = []
    for qid, answers in references.items():
        if isinstance(answers, str) or len(answers) == 0:
            raise ValueError(f"question {qid!r}: references must be a non-empty list of answers")
        if qid not in predictions:
            unanswered.append(qid)
            continue
        pred_norm = normalize(predictions[qid])
        gold_norms = [normalize(a) for a in answers]
        em_total += max(float(pred_norm == g) for g in gold_norms)
        f1_total += max(_token_f1(pred_norm.split(), g.split()) for g in gold_norms)
    _warn_unanswered(unanswered, "will receive score 0")
    n = len(references)
    return {"exact_match": 100.0 * em_total / n, "f1": 100.0 * f1_total / n}


def _warn_unanswered(ids: list, consequence: str) -> None:
    if ids:
        shown = ", ".join(map(str, ids[:5])) + (" ..." if len(ids) > 5 else "")
        warnings.warn(f"{len(ids)} unanswered question(s) {consequence}: {shown}", stacklevel=3)


def _squad_v2_f1(gold: str, pred: str) -> float:
    """evaluate-v2.0.py ``compute_f1``: when either side has no tokens, 1 iff both have none."""
    gold_tokens, pred_tokens = _squad_normalize(gold).split(), _squad_normalize(pred).split()
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)
    return _token_f1(pred_tokens, gold_tokens)


def squad_v2_scores(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Exact match and F1 (0-100) of SQuAD ``evaluate-v2.0.py`` (no ``na_prob`` file).

    As ``get_raw_scores``: gold answers that normalise to the empty string are dropped, and a
    question left without any (an unanswerable one) has the single gold answer ``""``; F1 of
    empty against empty is 1 (v1.1's F1 would give 0). A question without a prediction is left
    out of the mean, as the script's "Missing prediction" does (a warning is issued).
    """
    _check_nonempty("references", references)
    em_total = f1_total = 0.0
    missing = []
    for qid, answers in references.items():
        if isinstance(answers, str):
            raise ValueError(f"question {qid!r}: references must be a list of answers")
        if qid not in predictions:
            missing.append(qid)
            continue
        gold = [a for a in answers if _squad_normalize(a)] or [""]
        pred = predictions[qid]
        em_total += max(float(_squad_normalize(g) == _squad_normalize(pred)) for g in gold)
        f1_total += max(_squad_v2_f1(g, pred) for g in gold)
    _warn_unanswered(missing, "are left out of the mean, as evaluate-v2.0.py does")
    n = len(references) - len(missing)
    if n == 0:
        raise ValueError("no question in references has a prediction")
    return {"exact_match": 100.0 * em_total / n, "f1": 100.0 * f1_total / n}


# --------------------------------------------------------------------------- #
# sequence tagging
# --------------------------------------------------------------------------- #
def tagging_f1(gold: list[list[str]], pred: list[list[str]]) -> float:
    """Micro chunk F1 from ``seqeval.metrics.f1_score`` (default mode), as XTREME scores UD-POS and PAN-X.

    seqeval is applied to POS tags unchanged, exactly as XTREME does: a tag with
    no B-/I- prefix is read as prefix = its first character, so a run of
    identical tags (NOUN NOUN) is ONE chunk and the score is not token accuracy.
    The chunk TYPE of such a tag depends on seqeval's version: 0.0.12 (what
    XTREME's paper installed) keeps the whole tag; 0.0.16 and later (1.x) drop
    the first character, so CCONJ and SCONJ both become "CONJ" (confusing them
    is no error) and X becomes "_", the sentence separator's type (an X ending
    a sentence is then no chunk). ``metric_library_versions`` records the
    version with every result.
    seqeval's "seems not to be NE tag" warnings are silenced (they are expected).
    """
    from seqeval.metrics import f1_score  # imported lazily: only tagging needs it

    _check_same_length("gold", gold, "pred", pred)
    _check_nonempty("gold", gold)
    for i, (g, p) in enumerate(zip(gold, pred)):
        if len(g) != len(p):
            raise ValueError(
                f"length mismatch in sentence {i}: gold has {len(g)} tags, pred has {len(p)}"
            )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*seems not to be NE tag")
        return 100.0 * float(f1_score([list(s) for s in gold], [list(s) for s in pred]))


# --------------------------------------------------------------------------- #
# BUCC bitext mining
# --------------------------------------------------------------------------- #
def _prf_counts(ncorrect: int, npred: int, ngold: int) -> float:
    if ncorrect == 0:
        return 0.0
    precision = ncorrect / npred
    recall = ncorrect / ngold
    return 2 * precision * recall / (precision + recall)


def bucc_f1(
    scores: Mapping[tuple[str, str], float],
    gold: set[tuple[str, str]],
    threshold: float,
) -> float:
    """F1 of the candidate pairs with ``score >= threshold`` against ``gold``.

    ``>=`` as in XTREME's ``bucc_extract``; F1 is 0 when no predicted pair is
    correct (including when nothing passes the threshold, or there are no
    candidates at all), as in ``bucc_eval``.
    """
    _check_nonempty("gold", gold)
    predicted = {pair for pair, s in scores.items() if s >= threshold}
    gold = set(gold)
    return 100.0 * _prf_counts(len(predicted & gold), len(predicted), len(gold))


def best_threshold(
    scores: Mapping[tuple[str, str], float], gold: set[tuple[str, str]]
) -> float:
    """Threshold maximising F1 on ``gold``, as XTREME's ``bucc_optimize`` chooses it.

    Candidates are sorted by score, highest first (a stable sort: tied scores
    keep the mapping's order, which for mined candidates is the mining order,
    as the official candidates file has it), and F1 is computed after each
    single candidate. Where F1 improves strictly (``>``: the earlier, higher
    cut wins a tie in F1), the threshold becomes the midpoint of that
    candidate's score and the next one's. Inside a run of tied scores that
    midpoint is the tied score itself, so ``bucc_extract`` (``>=``) then keeps
    the whole run, as the official code does. At the last candidate the
    official code indexes past its list; its own score is used. With no
    candidate right (or none at all), 0.0, ``bucc_optimize``'s initial value.
    """
    _check_nonempty("gold", gold)
    gold = set(gold)
    items = sorted(scores.items(), key=lambda item: -item[1])
    best_f1, best = 0.0, 0.0
    ncorrect = 0
    for i, (pair, s) in enumerate(items):
        ncorrect += pair in gold
        f1 = _prf_counts(ncorrect, i + 1, len(gold))
        if f1 > best_f1:
            best_f1 = f1
            best = (s + items[i + 1][1]) / 2 if i + 1 < len(items) else float(s)
    return best


# --------------------------------------------------------------------------- #
# retrieval
# --------------------------------------------------------------------------- #
def retrieval_accuracy(similarity) -> float:
    """Tatoeba top-1 accuracy: % of rows i whose highest-scoring column is i.

    Rows are queries, columns candidates; extra distractor columns are allowed.
    Ties go to the lowest column index (``numpy.argmax``).
    """
    sim = np.asarray(similarity)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be a 2-D array, got shape {sim.shape}")
    if sim.size == 0:
        raise ValueError("similarity is empty")
    n_rows, n_cols = sim.shape
    if n_cols < n_rows:
        raise ValueError(
            f"similarity has {n_rows} rows but only {n_cols} columns; row i's match is column i"
        )
    hits = np.argmax(sim, axis=1) == np.arange(n_rows)
    return 100.0 * float(hits.mean())


def map_at_k(ranked: list[list[str]], relevant: list[set[str]], k: int = 20) -> float:
    """Mean average precision at k (LAReQA and Mewsli-X in XTREME-R), 0-100.

    Per query, as XTREME-R's ``average_precision_at_k``: over the top-k ranks r,
    sum precision@r at each rank holding a relevant item seen for the first time
    (repeats earn nothing but still occupy a rank), divided by
    ``min(len(relevant), k)``. With one relevant item (Mewsli-X) this is the
    reciprocal rank within the top k, i.e. the MRR@20 Mewsli-X reports.
    """
    _check_same_length("ranked", ranked, "relevant", relevant)
    _check_nonempty("ranked", ranked)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    total = 0.0
    for q, (ranking, targets) in enumerate(zip(ranked, relevant)):
        targets = set(targets)
        if not targets:
            raise ValueError(f"query {q} has no relevant items")
        hits, seen, ap = 0, set(), 0.0
        for rank, item in enumerate(ranking[:k], start=1):
            if item in targets and item not in seen:
                hits += 1
                ap += hits / rank
            seen.add(item)
        total += ap / min(len(targets), k)
    return 100.0 * total / len(ranked)


# --------------------------------------------------------------------------- #
# aggregation (XTREME evaluate.py)
# --------------------------------------------------------------------------- #
def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (n - 1) over seeds, as the paper's tables report them;
    no standard deviation from a single seed."""
    import statistics

    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def language_average(per_language: Mapping[str, float]) -> float:
    """Unweighted mean over languages: a task's score in XTREME."""
    _check_nonempty("per_language", per_language)
    return sum(per_language.values()) / len(per_language)


def pooled_average(per_language: Mapping[str, float], counts: Mapping[str, int]) -> float:
    """Mean over every query of every language: per-language means weighted by their counts.

    XTREME-R's ``utils_lareqa.mean_avg_prec_at_k`` asks all questions of all
    languages against one pool and reports ``np.mean`` of their APs: one mean
    over the questions, not a mean of per-language means (the two agree only
    when every language has as many questions).
    """
    _check_nonempty("per_language", per_language)
    missing = sorted(set(per_language) - set(counts))
    if missing:
        raise ValueError(f"no query count for language(s) {missing}")
    total = sum(counts[lang] for lang in per_language)
    if total <= 0:
        raise ValueError("the languages hold no queries")
    return sum(score * counts[lang] for lang, score in per_language.items()) / total


def metric_library_versions() -> dict[str, str | None]:
    """Versions of the libraries whose behaviour changes a score (None: not installed).

    seqeval's chunking of tags without a B-/I- prefix (UD-POS) changed after
    0.0.12, which changes UD-POS F1 (see ``tagging_f1``).
    """
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str | None] = {}
    for name in ("seqeval",):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def qa_task_score(f1: float, em: float) -> float:
    """XTREME's single number for a QA task: (F1 + EM) / 2."""
    return (f1 + em) / 2


def task_score(
    per_language: Mapping[str, float], per_language_em: Mapping[str, float] | None = None
) -> float:
    """A task's XTREME score from per-language results.

    Pass the per-language metric (accuracy, F1, mAP...) alone; for QA tasks pass
    per-language F1 and per-language EM, giving (mean F1 + mean EM) / 2.
    """
    if per_language_em is None:
        return language_average(per_language)
    if set(per_language) != set(per_language_em):
        raise ValueError(
            f"F1 and EM cover different languages: {sorted(set(per_language) ^ set(per_language_em))}"
        )
    return qa_task_score(language_average(per_language), language_average(per_language_em))


def benchmark_score(task_scores: Mapping[str, float]) -> float:
    """Overall benchmark score: unweighted mean of the task scores."""
    _check_nonempty("task_scores", task_scores)
    return sum(task_scores.values()) / len(task_scores)


def transfer_gap(per_language: Mapping[str, float], source: str = "en") -> float:
    """Cross-lingual transfer gap: source-language score minus the mean over all other languages."""
    if source not in per_language:
        raise ValueError(f"source language {source!r} missing from per_language")
    others = [v for lang, v in per_language.items() if lang != source]
    if not others:
        raise ValueError("transfer_gap needs at least one language besides the source")
    return per_language[source] - sum(others) / len(others)
