"""Extractive question answering (SQuAD v1.1 / v2.0, XQuAD, MLQA, TyDiQA-GoldP): the encoder
reads ``<s> question </s></s> context window </s>`` and a span head scores every token as the
answer's start and end (``AutoModelForQuestionAnswering``).

Featurisation follows the standard recipe (BERT's ``run_squad``, XTREME's scripts, transformers'
``run_qa``): the question is cut to ``max_query_length`` tokens, a long context is split into
windows of ``max_seq_length`` tokens that overlap by ``doc_stride`` tokens, and each window keeps
its tokens' character offsets into the original context (``None`` for question and special
tokens). A training window whose context part does not contain the whole answer, and every
window of an unanswerable SQuAD v2.0 question, is labelled with the ``<s>`` (CLS) index 0.

Prediction keeps, per window, only the ``n_best`` highest start and end logits (indices and
values) and the null score (start + end logit of ``<s>``): small enough to gather across ranks.
Decoding (``decode_answers``, on rank 0) looks at every valid pair of a question's windows
(start <= end, at most ``max_answer_length`` tokens, both inside the context), ranks pairs by
start + end logit and cuts the best one out of the ORIGINAL context through the offsets, so the
answer keeps the context's exact characters (Unicode, CJK, spacing). Its probability is the
softmax over the n-best list (deduplicated by text, as BERT's script does), for calibration
studies. SQuAD v2.0: the empty answer wins when the null score (the smallest over the question's
windows) beats the best span by more than ``NULL_SCORE_THRESHOLD`` (0, the scripts' default; a
tuned threshold is not used).

Metrics: ``xit_dist.evaluate.metrics.qa_scores``, SQuAD v1.1 script style (SQuAD, XQuAD,
TyDiQA) or MLQA style (MLQA, per language); SQuAD v2.0 with ``squad_v2_scores``, the v2.0
script's own rules (gold answers that normalise to empty are dropped, a question left without
one has the gold answer "", and empty against empty scores F1 1).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from functools import partial
from typing import Any, NamedTuple, Sequence

from xit_dist.data.tokenizer_identity import tokenizer_identity
from xit_dist.errors import SpecError
from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.formats.base import TaskFormat, featurize_rows
from xit_dist.tasks.formats.options import FormatOptions

FEATURIZE_VERSION = "1"
CLS_INDEX = 0                # XLM-R's <s>: the label of "no answer in this window"
NULL_SCORE_THRESHOLD = 0.0   # SQuAD v2.0: predict "" when null score - best span score > this
CONTEXT_SEQUENCE = 1         # sequence id of the context in a question/context pair
LABEL_COLUMNS = ("start_positions", "end_positions")
EVAL_COLUMNS = ("example_index", "offset_mapping")


class WindowTopK(NamedTuple):
    """What ``predict`` keeps of one window: the n-best start and end candidates (token index,
    logit) and the window's null score."""

    start_index: list[int]
    start_logit: list[float]
    end_index: list[int]
    end_logit: list[float]
    null_score: float


class Answer(NamedTuple):
    text: str
    probability: float  # softmax over the question's n-best list (0.0 when nothing was valid)


class ExtractiveQA(TaskFormat):
    name = "extractive_qa"

    # ------------------------------------------------------------------ data
    def check_options(self, options: FormatOptions, tokenizer) -> None:
        check_window_options(options, tokenizer)

    def featurize(self, task: Task, rows, source: DataSource, tokenizer, options: FormatOptions, *, for_eval: bool):
        """Rows -> one feature row per context window. Training: ``input_ids``,
        ``attention_mask``, ``start_positions``, ``end_positions``; rows ``row_problems``
        reports are dropped. Evaluation: model inputs plus ``example_index`` (the row) and
        ``offset_mapping``; only rows that cannot be scored are dropped (empty question or
        context, no gold answer where one is required), since the metric compares answer texts
        and does not need ``answer_start``."""
        check_window_options(options, tokenizer)
        columns = source.columns
        encode = partial(
            _encode_windows, columns=columns, tokenizer=tokenizer, options=options, model_inputs=self.model_inputs, for_eval=for_eval
        )
        return featurize_rows(
            rows, encode, tokenizer_identity(tokenizer), options.max_seq_length, options.doc_stride, options.max_query_length,
            self.name, FEATURIZE_VERSION, for_eval, repr(columns), with_indices=True,
        )

    def row_problems(self, task: Task, rows, source: DataSource):
        columns = source.columns
        for index, (question, context, answers) in enumerate(
            zip(rows[columns.question], rows[columns.context], rows[columns.answers])
        ):
            problem = _row_problem(question, context, answers, columns.allows_unanswerable, for_training=True)
            if problem is not None:
                yield index, problem

    def label_counts(self, task: Task, rows, source: DataSource) -> Counter:
        """Answerable vs unanswerable questions (SQuAD v2.0 has both)."""
        return Counter("answerable" if answers["text"] else "unanswerable" for answers in rows[source.columns.answers])

    # ------------------------------------------------------------------ model
    def model_class(self):
        from transformers import AutoModelForQuestionAnswering

        return AutoModelForQuestionAnswering

    def predict(self, model, batch: dict, options: FormatOptions) -> list[WindowTopK]:
        import torch

        outputs = model(**batch)
        padding = ~batch["attention_mask"].bool()
        start = outputs.start_logits.float().masked_fill(padding, -math.inf)
        end = outputs.end_logits.float().masked_fill(padding, -math.inf)
        k = min(options.n_best, start.shape[-1])
        start_logit, start_index = torch.topk(start, k, dim=-1)
        end_logit, end_index = torch.topk(end, k, dim=-1)
        null = (start[:, CLS_INDEX] + end[:, CLS_INDEX]).tolist()
        return [
            WindowTopK(*_finite(si, sv), *_finite(ei, ev), null_score)
            for si, sv, ei, ev, null_score in zip(
                start_index.tolist(), start_logit.tolist(), end_index.tolist(), end_logit.tolist(), null
            )
        ]

    def answers(
        self, task: Task, rows, features, predictions: list[WindowTopK], lang: str, options: FormatOptions
    ) -> dict[str, Answer]:
        """Each evaluated question's answer text and its probability (for calibration studies)."""
        columns = qa_columns(task, lang)
        return decode_answers(
            rows[columns.id],
            rows[columns.context],
            features["example_index"],
            features["offset_mapping"],
            predictions,
            n_best=options.n_best,
            max_answer_length=options.max_answer_length,
            allow_null=columns.allows_unanswerable,
        )

    def score(
        self, task: Task, rows, features, predictions: list[WindowTopK], lang: str, options: FormatOptions
    ) -> dict[str, float]:
        from xit_dist.evaluate.metrics import qa_scores, squad_v2_scores

        columns = qa_columns(task, lang)
        answers = self.answers(task, rows, features, predictions, lang, options)
        ids, gold = rows[columns.id], rows[columns.answers]
        evaluated = sorted(set(features["example_index"]))
        predicted = {ids[i]: answers[ids[i]].text for i in evaluated}
        references = {ids[i]: list(gold[i]["text"]) for i in evaluated}
        if columns.allows_unanswerable:
            scores = squad_v2_scores(predicted, references)
        else:
            scores = qa_scores(predicted, references, lang, columns.metric_style)
        return {"f1": scores["f1"], "exact_match": scores["exact_match"]}

    def num_examples(self, rows, features) -> int:
        """Questions evaluated (a question split into several windows counts once)."""
        return len(set(features["example_index"]))


# ---------------------------------------------------------------------------------- helpers


def qa_columns(task: Task, lang: str):
    """The column roles of the task's evaluation data in ``lang`` (``score`` gets no source)."""
    return task.eval_source("validation", lang).columns


def check_window_options(options: FormatOptions, tokenizer) -> None:
    """The windows must leave room for the context beyond the overlap (the tokenizer panics,
    without naming any setting, when ``doc_stride`` does not fit)."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    room = options.max_seq_length - options.max_query_length - specials
    if options.doc_stride >= room:
        raise SpecError(
            f"training.doc_stride {options.doc_stride} must be smaller than the context tokens per window: "
            f"training.max_seq_length {options.max_seq_length} - training.max_query_length {options.max_query_length} "
            f"- {specials} special tokens = {room}"
        )


def truncate_questions(questions: list[str], tokenizer, max_query_length: int) -> list[str]:
    """Cut each question after its first ``max_query_length`` tokens, at a token boundary of
    the question's own text (re-tokenising a cut word can give more pieces: cut again then)."""
    cut = list(questions)
    pending = list(range(len(cut)))
    while pending:
        encoded = tokenizer([cut[i] for i in pending], add_special_tokens=False, return_offsets_mapping=True)
        still = []
        for i, spans in zip(pending, encoded["offset_mapping"]):
            if len(spans) > max_query_length:
                cut[i] = cut[i][: spans[max_query_length - 1][1]]
                still.append(i)
        pending = still
    return cut


def _encode_windows(
    batch: dict[str, list[Any]], indices: list[int], *, columns, tokenizer, options: FormatOptions, model_inputs, for_eval: bool
) -> dict[str, list[Any]]:
    """A batch of rows -> its context windows: model inputs plus, for training, the answer's
    token positions, for evaluation, each window's row index and context offsets."""
    kept = _scorable_positions(batch, columns, for_eval)
    if not kept:
        return {name: [] for name in (*model_inputs, *(EVAL_COLUMNS if for_eval else LABEL_COLUMNS))}
    encoded = _tokenize_windows(batch, kept, columns, tokenizer, options)
    out: dict[str, list[Any]] = {name: encoded[name] for name in model_inputs}
    owners = encoded["overflow_to_sample_mapping"]
    context_offsets = _context_offsets(encoded)
    if for_eval:
        out["example_index"] = [indices[kept[owner]] for owner in owners]
        out["offset_mapping"] = context_offsets
        return out
    labels = [_window_label(batch[columns.answers][kept[owner]], spans) for owner, spans in zip(owners, context_offsets)]
    out["start_positions"] = [start for start, _ in labels]
    out["end_positions"] = [end for _, end in labels]
    return out


def _scorable_positions(batch: dict[str, list[Any]], columns, for_eval: bool) -> list[int]:
    """Positions in the batch of the rows ``_row_problem`` accepts (for training, or for evaluation)."""
    return [
        position
        for position in range(len(batch[columns.question]))
        if _row_problem(
            batch[columns.question][position],
            batch[columns.context][position],
            batch[columns.answers][position],
            columns.allows_unanswerable,
            for_training=not for_eval,
        )
        is None
    ]


def _tokenize_windows(batch: dict[str, list[Any]], kept: list[int], columns, tokenizer, options: FormatOptions):
    """The kept rows' (question, context) pairs, the question cut to ``max_query_length`` tokens
    and the context split into windows of ``max_seq_length`` tokens overlapping by ``doc_stride``."""
    questions = truncate_questions([batch[columns.question][p].lstrip() for p in kept], tokenizer, options.max_query_length)
    contexts = [batch[columns.context][p] for p in kept]
    return tokenizer(
        questions,
        contexts,
        truncation="only_second",
        max_length=options.max_seq_length,
        stride=options.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )


def _context_offsets(encoded) -> list[list[list[int] | None]]:
    """Per window, each token's character span in the context; None for question and special tokens."""
    return [
        [list(span) if sequence == CONTEXT_SEQUENCE else None for span, sequence in zip(spans, encoded.sequence_ids(w))]
        for w, spans in enumerate(encoded["offset_mapping"])
    ]


def _row_problem(question: str, context: str, answers: dict, allows_unanswerable: bool, *, for_training: bool) -> str | None:
    if not question or not question.strip():
        return "empty question"
    if not context or not context.strip():
        return "empty context"
    texts, starts = answers["text"], answers["answer_start"]
    if not texts and not allows_unanswerable:
        return "no answers (only SQuAD v2.0 has unanswerable questions)"
    if not for_training:
        return None
    if len(texts) != len(starts):
        return f"answers: {len(texts)} texts but {len(starts)} answer_start values"
    for text, start in zip(texts, starts):
        if not text:
            return "empty answer text"
        if context[start : start + len(text)] != text:
            return f"answer {text!r} not found at answer_start {start} in the context"
    return None


def _window_label(answers: dict, offsets: list[list[int] | None]) -> tuple[int, int]:
    """Token indices of the first answer in this window, or (CLS, CLS) when it is not inside."""
    if not answers["text"]:
        return CLS_INDEX, CLS_INDEX
    start_char = answers["answer_start"][0]
    end_char = start_char + len(answers["text"][0])
    inside = [t for t, span in enumerate(offsets) if span is not None]
    if not inside:
        return CLS_INDEX, CLS_INDEX
    first, last = inside[0], inside[-1]
    if offsets[first][0] > start_char or offsets[last][1] < end_char:
        return CLS_INDEX, CLS_INDEX
    start = next(t for t in inside if offsets[t][1] > start_char)
    end = next(t for t in reversed(inside) if offsets[t][0] < end_char)
    return start, end


def _finite(indices: list[int], values: list[float]) -> tuple[list[int], list[float]]:
    """Drop the -inf candidates that padding positions produce in short windows."""
    kept = [(i, v) for i, v in zip(indices, values) if v != -math.inf]
    return [i for i, _ in kept], [v for _, v in kept]


def decode_answers(
    ids: Sequence[str],
    contexts: Sequence[str],
    window_examples: Sequence[int],
    window_offsets: Sequence[Sequence[Sequence[int] | None]],
    predictions: Sequence[WindowTopK],
    *,
    n_best: int,
    max_answer_length: int,
    allow_null: bool,
) -> dict[str, Answer]:
    """Per question (``ids[i]``, ``contexts[i]``; window w belongs to row ``window_examples[w]``):
    the best span over all its windows, cut out of the original context, with its probability.

    A pair is valid when both tokens are context tokens of the same window (offset not None),
    start <= end and the span has at most ``max_answer_length`` tokens; pairs are ranked by
    start + end logit. The n-best list keeps the ``n_best`` best distinct texts; with
    ``allow_null`` the empty answer joins it with the smallest null score of the question's
    windows and is chosen when that beats the best span by more than ``NULL_SCORE_THRESHOLD``.
    A question without any valid span (and no null answer) gets ``Answer("", 0.0)``.
    """
    windows_of: dict[int, list[int]] = defaultdict(list)
    for window, example in enumerate(window_examples):
        windows_of[example].append(window)
    decoded: dict[str, Answer] = {}
    for example, windows in windows_of.items():
        spans, null_score = _ranked_spans([predictions[w] for w in windows], [window_offsets[w] for w in windows], max_answer_length)
        n_best_list = _n_best_texts(spans, contexts[example], n_best)
        decoded[ids[example]] = _chosen_answer(n_best_list, null_score if allow_null else None)
    return decoded


def _ranked_spans(
    tops: Sequence[WindowTopK], offsets_of: Sequence[Sequence[Sequence[int] | None]], max_answer_length: int
) -> tuple[list[tuple[float, int, int]], float]:
    """A question's valid (score, first character, end character) spans over its windows, best
    first, and the smallest null score of those windows."""
    spans: list[tuple[float, int, int]] = []
    null_score = math.inf
    for top, offsets in zip(tops, offsets_of):
        null_score = min(null_score, top.null_score)
        for start, start_logit in zip(top.start_index, top.start_logit):
            if start >= len(offsets) or offsets[start] is None:
                continue
            for end, end_logit in zip(top.end_index, top.end_logit):
                if end < start or end - start + 1 > max_answer_length or end >= len(offsets) or offsets[end] is None:
                    continue
                spans.append((start_logit + end_logit, offsets[start][0], offsets[end][1]))
    spans.sort(key=lambda span: (-span[0], span[1], span[2]))
    return spans, null_score


def _n_best_texts(spans: list[tuple[float, int, int]], context: str, n_best: int) -> list[tuple[float, str]]:
    """(score, text) of the ``n_best`` best spans with distinct, non-empty texts."""
    n_best_list: list[tuple[float, str]] = []
    seen: set[str] = set()
    for score, begin, finish in spans:
        text = context[begin:finish]
        if not text or text in seen:  # a span of zero characters is no answer
            continue
        seen.add(text)
        n_best_list.append((score, text))
        if len(n_best_list) == n_best:
            break
    return n_best_list


def _chosen_answer(n_best_list: list[tuple[float, str]], null_score: float | None) -> Answer:
    """The best span, or (``null_score`` given: unanswerable questions allowed) the empty answer
    when its null score beats the best span by more than ``NULL_SCORE_THRESHOLD``; with its
    softmax probability over the n-best list (the empty answer included)."""
    if null_score is not None:
        n_best_list = [*n_best_list, (null_score, "")]
    if not n_best_list:
        return Answer("", 0.0)
    probabilities = _softmax([score for score, _ in n_best_list])
    chosen = 0  # the best span (the list is sorted; the null entry, if any, is last)
    if null_score is not None and (len(n_best_list) == 1 or null_score - n_best_list[0][0] > NULL_SCORE_THRESHOLD):
        chosen = len(n_best_list) - 1
    return Answer(n_best_list[chosen][1], probabilities[chosen])


def _softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    weights = [math.exp(score - top) for score in scores]
    total = sum(weights)
    return [weight / total for weight in weights]
