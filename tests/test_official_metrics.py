"""Edge cases where the official scripts decide the number: SQuAD's evaluate-v2.0.py, XTREME's
BUCC mining and threshold (utils_retrieve.py), Mewsli-X's MRR (utils_mewslix.py), LAReQA's mAP
(utils_lareqa.py), and the seqeval version UD-POS F1 depends on. Expected values are worked out
by hand from those scripts in the comments. Pure Python: no Ray."""

from __future__ import annotations

import json
from importlib.metadata import version

import numpy as np
import pytest

from xit_dist.tasks.registry import get_task
from xit_dist.data.loading import load_source
from xit_dist.evaluate.metrics import (
    best_threshold,
    bucc_f1,
    metric_library_versions,
    pooled_average,
    squad_v2_scores,
    tagging_f1,
)
from xit_dist.evaluate.results import TaskResults
from xit_dist.tasks.formats import get_format
from xit_dist.tasks.formats.extractive_qa import WindowTopK
from xit_dist.tasks.retrieval_rows import prefix_friendly_order, row
from xit_dist.tasks.formats.options import FormatOptions

approx = pytest.approx
RETRIEVAL = get_format("retrieval")


# ---------------------------------------------------------------------------------- SQuAD v2.0


def test_squad_v2_a_gold_answer_that_normalises_to_empty_is_dropped():
    # "The" normalises to "" and is dropped; no gold is left, so the gold is [""]: "" is right
    # for EM and F1 (v1.1's F1 of empty against empty would be 0).
    assert squad_v2_scores({"q": ""}, {"q": ["The"]}) == {"exact_match": 100.0, "f1": 100.0}
    # With another gold left, "The" is gone: "" matches nothing (v1.1 would give EM 100).
    assert squad_v2_scores({"q": ""}, {"q": ["The", "cat"]}) == {"exact_match": 0.0, "f1": 0.0}
    # An unanswerable question: a prediction that normalises to empty ("an.") is right.
    assert squad_v2_scores({"q": "an."}, {"q": []}) == {"exact_match": 100.0, "f1": 100.0}
    assert squad_v2_scores({"q": "cat"}, {"q": []}) == {"exact_match": 0.0, "f1": 0.0}


def test_squad_v2_ordinary_answers_and_missing_predictions():
    # "a big cat" vs "the cat": tokens [big, cat] vs [cat]: P 1/2, R 1 -> F1 2/3; EM 0.
    # "q2" has no prediction: left out of the mean, as the script's "Missing prediction".
    with pytest.warns(UserWarning, match="1 unanswered question"):
        scores = squad_v2_scores({"q1": "a big cat"}, {"q1": ["the cat"], "q2": ["dog"]})
    assert scores == {"exact_match": 0.0, "f1": approx(200 / 3)}
    with pytest.raises(ValueError, match="no question"), pytest.warns(UserWarning):
        squad_v2_scores({}, {"q": ["x"]})


def test_the_squad_v2_task_is_scored_by_the_v2_script():
    """The extractive-QA format scores squad_v2 with squad_v2_scores: gold ["The"], predicted
    "" (the null score wins) gives EM 100 and F1 100 (it gave F1 0 through v1.1's F1)."""
    context = "The cat sat."
    table = {"id": ["q"], "context": [context], "answers": [{"text": ["The"], "answer_start": [0]}]}
    features = {"example_index": [0], "offset_mapping": [[None, None, [0, 3], [4, 7], [8, 12]]]}
    null_wins = [WindowTopK([2], [1.0], [2], [1.0], 10.0)]
    scores = get_format("extractive_qa").score(get_task("squad_v2"), table, features, null_wins, "en", FormatOptions())
    assert scores == {"f1": 100.0, "exact_match": 100.0}


def test_squad_v2_calibration_counts_an_answer_right_as_the_v2_script_does():
    """Calibration's "correct" is the v2 script's EM: "" against gold ["The", "cat"] is wrong
    ("The" is dropped), "" against no gold is right."""
    from xit_dist.evaluate.calibration import qa_confidences
    from xit_dist.tasks.formats.extractive_qa import Answer

    class Answers:  # the format's decoded answers, fixed
        def answers(self, *args):
            return {"a": Answer("", 0.7), "b": Answer("", 0.4)}

    squad_v2 = get_task("squad_v2")
    rows = {"id": ["a", "b"], "answers": [{"text": ["The", "cat"]}, {"text": []}]}
    _, correct = qa_confidences(Answers(), squad_v2, rows, {"example_index": [0, 1]}, None, "en", None)
    assert correct == [False, True]


# ---------------------------------------------------------------------------------- BUCC


def test_bucc_threshold_inside_tied_scores_follows_bucc_optimize():
    """bucc_optimize walks the candidates one by one (ties in the mapping's order). Gold has 3
    pairs. Order g1 .9, g2 .8, w1 .8, x .1: F1 after each: 1/2, 4/5, 2/3, 4/7. The best, 4/5,
    comes after g2, inside the tie: threshold (.8 + .8) / 2 = .8 (grouping ties gave .45)."""
    gold = {("g1", "e"), ("g2", "e"), ("g3", "e")}
    scores = {("g1", "e"): 0.9, ("g2", "e"): 0.8, ("w1", "e"): 0.8, ("x", "e"): 0.1}
    assert best_threshold(scores, gold) == approx(0.8)
    # bucc_extract keeps >= .8: the whole tie, F1 2/3, as the official code scores it
    assert bucc_f1(scores, gold, 0.8) == approx(200 / 3)
    # w1 before g2: F1 1/2, 2/5, 2/3, 4/7: the best is after the tie, (.8 + .1) / 2
    scores = {("g1", "e"): 0.9, ("w1", "e"): 0.8, ("g2", "e"): 0.8, ("x", "e"): 0.1}
    assert best_threshold(scores, gold) == approx(0.45)


def test_bucc_without_candidates_scores_0_like_bucc_eval():
    gold = {("a", "b")}
    assert bucc_f1({}, gold, 0.5) == 0.0
    assert best_threshold({}, gold) == 0.0  # bucc_optimize's initial value


def _features(items):
    """Retrieval feature rows as featurize makes them, from (id, text, side, part, relevant)."""
    from datasets import Dataset

    names = ("id", "text", "side", "part", "relevant")
    return Dataset.from_dict({name: [item[k] for item in items] for k, name in enumerate(names)})


def _pairs(part: str, n: int, rng, repeated_source_text: bool = False):
    """n gold pairs (noisy copies) of one part; optionally every source line has the same text."""
    items, vectors = [], []
    for i in range(n):
        items.append((f"{part}x{i}", "same" if repeated_source_text else f"{part}x{i}", "source", part, [f"{part}y{i}"]))
        vectors.append(rng.normal(size=8))
    for i in range(n):
        items.append((f"{part}y{i}", f"{part}y{i}", "target", part, []))
        vectors.append(vectors[i] + 0.1 * rng.normal(size=8))
    return items, vectors


def test_bucc_without_dev_candidates_warns_and_scores_0():
    rng = np.random.default_rng(0)
    bucc = get_task("bucc")
    test_items, test_vectors = _pairs("test", 4, rng)
    with pytest.warns(UserWarning, match="bucc de: no dev gold pairs .*F1 is 0"):
        assert RETRIEVAL.score(bucc, None, _features(test_items), test_vectors, "de", FormatOptions()) == {"f1": 0.0}
    # dev gold but no candidate left: every dev source line has the same text (read_sent2id drops it)
    dev_items, dev_vectors = _pairs("dev", 3, rng, repeated_source_text=True)
    features = _features(dev_items + test_items)
    with pytest.warns(UserWarning, match="no dev candidate pairs"):
        assert RETRIEVAL.score(bucc, None, features, dev_vectors + test_vectors, "de", FormatOptions()) == {"f1": 0.0}


def test_bucc_unifies_raw_lines_and_drops_texts_repeated_after_stripping():
    """text_load_unify keys on the raw line: "s1" and "s1 " are two sentences (both in the
    neighbour pool), but read_sent2id strips, finds "s1" twice and drops both."""
    from xit_dist.tasks.formats.retrieval import _Items, _mining_scores, margin_candidates, normalised

    rng = np.random.default_rng(2)
    items, vectors = _pairs("dev", 4, rng)
    items.append(("dev-again", "devx1 ", "source", "dev", []))  # devx1's text with a trailing space
    vectors.append(vectors[1])  # the same embedding (sentences are stripped before embedding)
    scores, gold = _mining_scores(_Items(_features(items), vectors), "dev")
    assert not any(x in ("devx1", "dev-again") for x, _ in scores)
    assert ("devx1", "devy1") in gold
    # the kept pairs score as mine_bitext scores them with both lines in the pool
    x = normalised(np.stack([v for v, item in zip(vectors, items) if item[2] == "source"]).astype(np.float32))
    y = normalised(np.stack([v for v, item in zip(vectors, items) if item[2] == "target"]).astype(np.float32))
    x_ids = [item[0] for item in items if item[2] == "source"]
    expected = {(x_ids[i], f"devy{j}"): s for i, j, s in margin_candidates(x, y) if x_ids[i] not in ("devx1", "dev-again")}
    assert scores == approx(expected)


def test_bucc_rows_keep_the_raw_sentence(tmp_path):
    folder = tmp_path / "bucc2018/de-en"
    folder.mkdir(parents=True)
    for part in ("sample", "training"):
        (folder / f"de-en.{part}.de").write_text("de-1\tein Satz \nde-2\tein Satz\n", encoding="utf-8")
        (folder / f"de-en.{part}.en").write_text("en-1\ta sentence\n", encoding="utf-8")
        (folder / f"de-en.{part}.gold").write_text("de-2\ten-1\n", encoding="utf-8")
    rows = load_source(get_task("bucc").eval_source("validation", "de"), tmp_path)
    assert sorted(t for t, side in zip(rows["text"], rows["side"]) if side == "source") == ["ein Satz", "ein Satz "]


# ---------------------------------------------------------------------------------- ranking


def test_mewslix_a_gold_entity_missing_from_the_candidates_scores_0():
    """utils_mewslix.evaluate: q1's gold Q404 is not a candidate, so its reciprocal rank is 0 and
    it counts: MRR (1 + 0) / 2 = 50 (dropping it gave 100)."""
    features = _features([
        ("q0", "q0", "source", "test", ["c0"]), ("q1", "q1", "source", "test", ["Q404"]),
        ("c0", "c0", "target", "test", []), ("c1", "c1", "target", "test", []),
    ])
    vectors = [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 0.1]), np.array([0.6, 0.8])]
    assert RETRIEVAL.score(get_task("mewslix"), None, features, vectors, "de", FormatOptions()) == {"map_at_20": 50.0}
    assert RETRIEVAL.num_examples(None, features) == 2


def test_every_prefix_of_the_release_rows_keeps_each_query_with_its_gold():
    """max_examples_per_language keeps a prefix: a query cut off from its gold would score 0."""
    sources = [row("m1", "m1", "source", "test", ["Q2"]), row("m2", "m2", "source", "test", ["Q2", "Q3"])]
    targets = [row(q, q, "target", "test") for q in ("Q1", "Q2", "Q3", "Q4")]
    ordered = prefix_friendly_order(sources, targets)
    assert [r["id"] for r in ordered] == ["Q2", "m1", "Q1", "Q3", "m2", "Q4"]
    for n in range(1, len(ordered) + 1):
        present = {r["id"] for r in ordered[:n] if r["side"] == "target"}
        assert all(set(r["relevant"]) <= present for r in ordered[:n] if r["side"] == "source")


def test_lareqa_averages_over_every_question_of_every_language():
    """utils_lareqa.mean_avg_prec_at_k: np.mean over all questions. en 80 over 3 questions and
    de 50 over 1: (3 * 80 + 50) / 4 = 72.5, not (80 + 50) / 2 = 65. Mewsli-X's evaluate_all
    macro-averages its languages: 65."""
    assert pooled_average({"en": 80.0, "de": 50.0}, {"en": 3, "de": 1}) == approx(72.5)
    per_language, counts = {"en": {"map_at_20": 80.0}, "de": {"map_at_20": 50.0}}, {"en": 3, "de": 1}
    assert TaskResults("lareqa", "test", per_language, counts).mlflow_metrics()["lareqa.map_at_20.avg"] == approx(72.5)
    assert TaskResults("mewslix", "test", per_language, counts).mlflow_metrics()["mewslix.map_at_20.avg"] == approx(65.0)
    assert "72.50" in TaskResults("lareqa", "test", per_language, counts).table()
    with pytest.raises(ValueError, match="no query count"):
        pooled_average({"en": 1.0}, {})


# ---------------------------------------------------------------------------------- seqeval


def test_the_seqeval_version_is_in_every_results_record(tmp_path):
    assert metric_library_versions() == {"seqeval": version("seqeval")}
    results = TaskResults("udpos", "test", {"de": {"f1": 90.0}}, {"de": 5})
    record = json.loads(results.write(tmp_path)[0].read_text())
    assert record["libraries"] == {"seqeval": version("seqeval")}


def test_seqeval_after_0_0_12_chunks_cconj_sconj_and_x_differently():
    """seqeval >= 0.0.16 drops a POS tag's first character for its type: CCONJ and SCONJ are both
    "CONJ", so confusing them is no error (0.0.12, XTREME's version, gives 0); X is "_", the
    separator's type, so a sentence-final X is no chunk: gold chunks NOUN, VERB against pred
    NOUN NOUN (one chunk), VERB: P 1/2, R 1/2 -> 50 (0.0.12 counts the X: R 1/3 -> 40)."""
    assert tagging_f1([["CCONJ"]], [["SCONJ"]]) == 100.0
    assert tagging_f1([["NOUN", "X"], ["VERB"]], [["NOUN", "NOUN"], ["VERB"]]) == approx(50.0)
