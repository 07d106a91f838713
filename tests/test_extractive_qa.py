"""Extractive QA: windows over long contexts, offsets back into the original text (Unicode and
CJK included), n-best decoding across windows, SQuAD v2.0's null answer, the official metric
styles, the demo data in the hub schemas, and one real Ray + DeepSpeed run (SQuAD -> XQuAD)."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import small_spec_tree
from xit_dist.data.loading import load_source
from xit_dist.errors import SpecError
from xit_dist.evaluate.metrics import squad_v2_scores
from xit_dist.tasks.registry import get_task
from xit_dist.tasks.formats import get_format
from xit_dist.tasks.formats.extractive_qa import (
    CLS_INDEX,
    WindowTopK,
    decode_answers,
)
from xit_dist.tasks.squad import squad_source
from xit_dist.tasks.formats.options import FormatOptions

FMT = get_format("extractive_qa")
# Small windows so that a few sentences already need several of them.
WINDOWS = FormatOptions(max_seq_length=24, doc_stride=6, max_query_length=8, n_best=5, max_answer_length=6)


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from xit_dist.builtin.assets import resolve_model_dir

    return AutoTokenizer.from_pretrained(resolve_model_dir("builtin:xlmr-tiny"))


def squad_row(qid: str, context: str, question: str, answer: str | None, start: int | None = None) -> dict:
    if answer is None:
        answers = {"text": [], "answer_start": []}
    else:
        answers = {"text": [answer], "answer_start": [context.index(answer) if start is None else start]}
    return {"id": qid, "title": "t", "context": context, "question": question, "answers": answers}


def load_rows(tmp_path, rows: list[dict], source=None):
    """Write ``rows`` as the local mirror of ``source`` and read them through the real loader."""
    source = source or squad_source("train")
    path = tmp_path / source.hub_id / source.config / f"{source.split}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return load_source(source, tmp_path)


LONG_CONTEXT = (
    "teacher buys 3 old apples in market. doctor sells books in school. farmer opens 5 boxes. "
    "pilot finds new letters in garden. singer loses cups in village. baker hides 7 keys in forest."
)


# ------------------------------------------------------------------------------ featurisation


def test_windows_overlap_by_the_stride_and_label_the_answer_where_it_is_whole(tmp_path, tokenizer):
    rows = load_rows(tmp_path, [squad_row("q1", LONG_CONTEXT, "who hides keys?", "baker")])
    source = squad_source("train")
    train = FMT.featurize(get_task("squad"), rows, source, tokenizer, WINDOWS, for_eval=False)
    evaluation = FMT.featurize(get_task("squad"), rows, source, tokenizer, WINDOWS, for_eval=True)
    assert set(train.column_names) == {"input_ids", "attention_mask", "start_positions", "end_positions"}
    assert len(train) == len(evaluation) >= 3
    assert all(len(ids) <= WINDOWS.max_seq_length for ids in train["input_ids"])
    offsets = evaluation["offset_mapping"]
    context_spans = [[span for span in window if span is not None] for window in offsets]
    for left, right in zip(context_spans, context_spans[1:]):  # consecutive windows share doc_stride tokens
        assert left[-WINDOWS.doc_stride:] == right[: WINDOWS.doc_stride]
    labelled = 0
    for start, end, window in zip(train["start_positions"], train["end_positions"], offsets):
        if (start, end) == (CLS_INDEX, CLS_INDEX):
            continue
        labelled += 1
        assert LONG_CONTEXT[window[start][0] : window[end][1]] == "baker"
    assert labelled >= 1
    # the windows without a label are exactly those whose context part misses the answer
    answer_start = LONG_CONTEXT.index("baker")
    for start, window in zip(train["start_positions"], context_spans):
        whole = window[0][0] <= answer_start and window[-1][1] >= answer_start + len("baker")
        assert (start != CLS_INDEX) == whole


def test_question_is_cut_to_max_query_length_tokens(tokenizer):
    from xit_dist.tasks.formats.extractive_qa import truncate_questions

    long_question = " ".join(["teacher buys apples"] * 10) + "?"
    (cut,) = truncate_questions([long_question], tokenizer, 5)
    assert long_question.startswith(cut)
    assert len(tokenizer(cut, add_special_tokens=False)["input_ids"]) == 5


@pytest.mark.parametrize(
    "context, answer",
    [
        ("lehrer kauft äpfel. schüler öffnet größere kisten in münchen.", "größere kisten"),
        ("учитель покупает яблоки в магазине. врач продаёт книги.", "продаёт книги"),
        ("电 在 山丝 takes 3 个 勺青。 柳声 在 多柳 枣枣 6 个 蓝 墙牛。", "6 个 蓝 墙牛"),
        ("电在山丝takes勺青。柳声在多柳枣枣墙牛。", "多柳"),  # CJK without spaces
        ("🍎🍎 ＡＢＣ ﬁx teacher buys 𝔘 apples in market.", "apples in market"),  # astral, NFKC-changed
    ],
)
def test_offsets_map_answers_back_to_the_original_characters(tmp_path, tokenizer, context, answer):
    # Words outside the tiny vocabulary fall apart into characters: windows wide enough to hold them.
    options = FormatOptions(max_seq_length=48, doc_stride=8, max_query_length=8)
    rows = load_rows(tmp_path, [squad_row("q", context, "who buys what?", answer)])
    source = squad_source("train")
    train = FMT.featurize(get_task("squad"), rows, source, tokenizer, options, for_eval=False)
    evaluation = FMT.featurize(get_task("squad"), rows, source, tokenizer, options, for_eval=True)
    found = set()
    for start, end, window in zip(train["start_positions"], train["end_positions"], evaluation["offset_mapping"]):
        for span in window:
            assert span is None or 0 <= span[0] <= span[1] <= len(context)
        if start != CLS_INDEX:
            found.add(context[window[start][0] : window[end][1]])
    assert found == {answer}


def test_row_problems_are_reported_and_dropped_for_training_only(tmp_path, tokenizer):
    context = "teacher buys apples in market."
    rows = load_rows(
        tmp_path,
        [
            squad_row("ok", context, "who buys apples?", "teacher"),
            squad_row("moved", context, "where?", "market", start=3),
            squad_row("blank", context, "   ", "teacher"),
            squad_row("none", context, "who sells apples?", None),
        ],
    )
    task, source = get_task("squad"), squad_source("train")
    problems = dict(FMT.row_problems(task, rows, source))
    assert sorted(problems) == [1, 2, 3]
    assert "not found at answer_start 3" in problems[1]
    assert problems[2] == "empty question" and problems[3].startswith("no answers")
    train = FMT.featurize(task, rows, source, tokenizer, WINDOWS, for_eval=False)
    evaluation = FMT.featurize(task, rows, source, tokenizer, WINDOWS, for_eval=True)
    assert len(train) == 1
    assert sorted(set(evaluation["example_index"])) == [0, 1]  # the metric only needs the answer text
    assert FMT.num_examples(rows, evaluation) == 2


def test_squad_v2_unanswerable_rows_are_kept_with_the_cls_label(tmp_path, tokenizer):
    from xit_dist.tasks.squad_v2 import squad_v2_source

    source = squad_v2_source("train")
    rows = load_rows(tmp_path, [squad_row("u", LONG_CONTEXT, "who sells apples?", None)], source)
    train = FMT.featurize(get_task("squad_v2"), rows, source, tokenizer, WINDOWS, for_eval=False)
    assert len(train) >= 3
    assert set(train["start_positions"]) == set(train["end_positions"]) == {CLS_INDEX}
    assert FMT.label_counts(get_task("squad_v2"), rows, source) == {"unanswerable": 1}


def test_a_stride_that_does_not_fit_the_window_is_a_spec_error(tmp_path, tokenizer):
    rows = load_rows(tmp_path, [squad_row("q", LONG_CONTEXT, "who hides keys?", "baker")])
    options = FormatOptions(max_seq_length=24, doc_stride=12, max_query_length=8)
    with pytest.raises(SpecError, match=r"training.doc_stride 12 must be smaller .* = 12"):
        FMT.featurize(get_task("squad"), rows, squad_source("train"), tokenizer, options, for_eval=False)


# ------------------------------------------------------------------------------ decoding


def window(starts: dict[int, float], ends: dict[int, float], null: float = -100.0) -> WindowTopK:
    return WindowTopK(list(starts), list(starts.values()), list(ends), list(ends.values()), null)


# context "ab cd ef gh": window 0 holds tokens 3..5 = "ab","cd","ef" (0-2 are the question),
# window 1 holds tokens 3..5 = "cd","ef","gh" (overlap of two tokens).
CONTEXT = "ab cd ef gh"
OFFSETS = [
    [None, None, None, [0, 2], [3, 5], [6, 8], None],
    [None, None, None, [3, 5], [6, 8], [9, 11], None],
]


def decode(predictions, *, max_answer_length=30, allow_null=False, n_best=20):
    return decode_answers(
        ["q"], [CONTEXT], [0, 0], OFFSETS, predictions,
        n_best=n_best, max_answer_length=max_answer_length, allow_null=allow_null,
    )["q"]


def test_the_best_valid_pair_over_all_windows_is_cut_from_the_context():
    predictions = [
        # (1, 2) lies in the question and (5, 3) ends before it starts: both skipped despite their scores
        window({1: 50.0, 5: 20.0}, {2: 50.0, 3: 20.0, 5: 1.0}),
        window({3: 2.0}, {5: 4.0}),  # "cd ef gh": 6.0
    ]
    assert decode(predictions).text == "ef"  # window 0, (5, 5): 21.0
    predictions[1] = window({3: 30.0}, {5: 4.0})
    assert decode(predictions).text == "cd ef gh"  # now window 1 wins: 34.0


def test_decoding_ranks_by_start_plus_end_logit_and_reports_the_n_best_softmax():
    predictions = [
        window({3: 2.0}, {4: 1.0}),  # "ab cd": 3.0
        window({4: 3.0, 5: 9.0}, {5: 4.0}),  # "ef gh": 7.0, "gh": 13.0
    ]
    answer = decode(predictions)
    assert answer.text == "gh"
    scores = [13.0, 7.0, 3.0]
    assert answer.probability == pytest.approx(math.exp(13.0) / sum(math.exp(s) for s in scores))
    assert decode(predictions, n_best=1).probability == pytest.approx(1.0)


def test_max_answer_length_limits_the_span_in_tokens():
    predictions = [window({3: 10.0, 5: 1.0}, {5: 10.0, 3: 0.5}), window({}, {})]
    assert decode(predictions).text == "ab cd ef"  # 3 tokens, score 20
    assert decode(predictions, max_answer_length=2).text == "ef"  # (5, 5): 11.0; (3, 3) gives 10.5
    assert decode(predictions, max_answer_length=1).text == "ef"


def test_the_same_text_from_overlapping_windows_counts_once():
    predictions = [window({4: 5.0}, {4: 5.0}), window({3: 5.0}, {3: 5.0})]  # "cd" twice
    answer = decode(predictions)
    assert answer == ("cd", pytest.approx(1.0))


def test_squad_v2_null_answer_wins_only_when_its_score_beats_the_best_span():
    spans = [window({3: 2.0}, {3: 2.0}, null=5.0), window({5: 1.0}, {5: 1.0}, null=3.0)]
    # null = min over windows = 3.0 < best span 4.0: the span
    assert decode(spans, allow_null=True).text == "ab"
    null_wins = [window({3: 1.0}, {3: 1.0}, null=6.0), window({5: 0.5}, {5: 0.5}, null=2.5)]
    answer = decode(null_wins, allow_null=True)
    assert answer.text == ""
    scores = [2.5, 2.0, 1.0]  # null 2.5 vs "ab" 2.0 and "gh" 1.0
    assert answer.probability == pytest.approx(math.exp(2.5) / sum(math.exp(s) for s in scores))
    assert decode(null_wins, allow_null=False).text == "ab"


def test_no_valid_span_gives_an_empty_answer_with_zero_confidence():
    assert decode([window({1: 3.0}, {2: 3.0}), window({}, {})]) == ("", 0.0)


def test_squad_v2_scores_follow_the_v2_script():
    references = {"a": ["the cat"], "b": [], "c": [], "d": ["dog house"]}
    predictions = {"a": "cat", "b": "", "c": "a", "d": "house"}  # "a" normalises to "" (article)
    scores = squad_v2_scores(predictions, references)
    # EM: a 1, b 1, c 1, d 0; F1: a 1, b 1, c 1, d 2/3
    assert scores["exact_match"] == pytest.approx(75.0)
    assert scores["f1"] == pytest.approx(100 * (3 + 2 / 3) / 4)


def test_score_uses_the_task_metric_style_and_reports_f1_first():
    context = "Ich sehe die Katze im Garten."
    rows = [{"id": "q", "context": context, "question": "Was?", "answers": {"text": ["die Katze"], "answer_start": [9]}}]
    features = {"example_index": [0], "offset_mapping": [[None, None, [9, 12], [13, 18], [19, 21]]]}
    predictions = [window({3: 5.0}, {3: 5.0})]  # "Katze"
    columns = ("id", "context", "answers")
    table = {name: [row[name] for row in rows] for name in columns}
    mlqa = FMT.score(get_task("mlqa"), table, features, predictions, "de", FormatOptions())
    xquad = FMT.score(get_task("xquad"), table, features, predictions, "de", FormatOptions())
    assert list(mlqa) == ["f1", "exact_match"]
    assert mlqa == {"f1": 100.0, "exact_match": 100.0}  # MLQA drops German articles
    assert xquad["exact_match"] == 0.0 and xquad["f1"] == pytest.approx(100 * 2 / 3)


def test_predict_keeps_n_best_candidates_inside_each_window(tokenizer):
    import torch
    from transformers import AutoModelForQuestionAnswering

    from xit_dist.builtin.assets import resolve_model_dir

    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_pretrained(resolve_model_dir("builtin:xlmr-tiny")).eval()
    encoded = [tokenizer("who buys apples?", text) for text in ("teacher buys apples.", LONG_CONTEXT)]
    batch = FMT.collator(tokenizer)([{k: e[k] for k in FMT.model_inputs} for e in encoded])
    with torch.no_grad():
        short, long = FMT.predict(model, batch, FormatOptions(n_best=5))
    real_length = len(encoded[0]["input_ids"])
    assert len(short.start_index) == len(short.end_index) == 5
    assert max(short.start_index + short.end_index) < real_length  # never a padding position
    assert short.start_logit == sorted(short.start_logit, reverse=True)
    assert all(math.isfinite(v) for v in long.start_logit + long.end_logit + [long.null_score])


# ------------------------------------------------------------------------------ demo data


@pytest.fixture(scope="module")
def demo_dir():
    from xit_dist.builtin.assets import resolve_data_dir

    return resolve_data_dir("builtin:demo")


@pytest.mark.parametrize(
    "task_name, languages",
    [("squad", ("en",)), ("squad_v2", ("en",)), ("xquad", ("en", "de", "es", "ru", "zh")),
     ("mlqa", ("en", "de", "es", "zh")), ("tydiqa", ("en", "ru", "sw"))],
)
def test_demo_data_loads_in_the_hub_schema_with_answers_at_their_offsets(demo_dir, task_name, languages):
    task = get_task(task_name)
    sources = [*task.train_sources, *(task.eval_source(split, lang) for lang in languages for split in task.eval_splits)]
    for source in sources:
        rows = load_source(source, demo_dir)
        assert len(rows) >= 100
        assert list(rows.features) == list(source.schema)
        assert list(FMT.row_problems(task, rows, source)) == []
        if source.language_column:
            assert all(qid.startswith(source.language + "-") for qid in rows["id"])
    if task_name == "squad_v2":
        counts = FMT.label_counts(task, load_source(task.train_sources[0], demo_dir), task.train_sources[0])
        assert 0.25 < counts["unanswerable"] / sum(counts.values()) < 0.42


def test_xquad_demo_rows_are_parallel_across_languages(demo_dir):
    task = get_task("xquad")
    english, german = (load_source(task.eval_source("test", lang), demo_dir) for lang in ("en", "de"))
    assert english["id"] == german["id"]
    assert english["question"][0] != german["question"][0]


# ------------------------------------------------------------------------------ real run


@pytest.mark.ray
def test_squad_to_xquad_trains_and_scores_every_language_on_ray_and_deepspeed(ray_cluster, tmp_path):
    from mlflow.tracking import MlflowClient

    from xit_dist.run.scheduler import run_experiment
    from xit_dist.config.load import validate_tree

    tree = small_spec_tree(tmp_path, intermediate=(), target="xquad", name="qa")
    tree["target"]["training"].update(
        max_steps=40, learning_rate=5e-3, max_seq_length=40, max_query_length=10, doc_stride=12
    )
    tree["evaluation"].update(languages=["en", "de", "zh"], max_examples_per_language=120, n_best=10, max_answer_length=10)
    summary = run_experiment(validate_tree(tree))

    (phase,) = summary.phases
    losses = [loss for _, loss in phase.record["losses"]]
    assert len(losses) >= 4 and losses[-1] < losses[0] - 0.5, losses
    metrics = summary.results.mlflow_metrics()
    expected = {f"xquad.{m}.{lang}" for m in ("f1", "exact_match") for lang in ("en", "de", "zh", "avg")}
    assert expected | {"xquad.transfer_gap"} == set(metrics)
    assert all(0.0 <= metrics[key] <= 100.0 for key in expected)
    assert all(metrics[f"xquad.f1.{lang}"] >= metrics[f"xquad.exact_match.{lang}"] for lang in ("en", "de", "zh"))
    assert summary.results.counts == {"en": 120, "de": 120, "zh": 120}  # questions, not windows
    # An untrained span head gets EM ~5 on this data (its F1 ~10-20 comes from partial overlaps);
    # 40 steps learn which slot each English question word asks for (EM ~35 here).
    assert metrics["xquad.exact_match.en"] > 20.0
    assert metrics["xquad.transfer_gap"] > 0.0  # de and zh cannot read the English question words
    logged = MlflowClient(summary.tracking_uri).get_run(summary.parent_run_id).data.metrics
    assert {key: logged[key] for key in expected} == pytest.approx({key: metrics[key] for key in expected})
