"""Hand-computed checks for xit_dist.evaluate.metrics (expected values worked out in comments)."""

import numpy as np
import pytest

from xit_dist.evaluate.metrics import (
    _mlqa_normalize,
    accuracy,
    benchmark_score,
    best_threshold,
    bucc_f1,
    language_average,
    map_at_k,
    qa_scores,
    qa_task_score,
    retrieval_accuracy,
    tagging_f1,
    task_score,
    transfer_gap,
)

approx = pytest.approx


# ------------------------------------------------------------------ accuracy
def test_accuracy():
    # positions 0 and 2 match -> 2/4 = 50
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == approx(50.0)
    assert accuracy(["a"], ["a"]) == approx(100.0)


def test_accuracy_validation():
    with pytest.raises(ValueError, match="length mismatch"):
        accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])


# ------------------------------------------------------------------ SQuAD v1.1
def test_squad_articles_punctuation_multiple_golds_unanswered():
    refs = {
        "q1": ["Eiffel Tower"],
        "q2": ["Paris", "Paris, France"],
        "q3": ["1889"],
    }
    preds = {"q1": "The Eiffel Tower!", "q2": "in Paris, France"}
    with pytest.warns(UserWarning, match="unanswered"):
        out = qa_scores(preds, refs, lang="en", style="squad")
    # q1: "the eiffel tower" -> "eiffel tower" == gold: EM 1, F1 1
    # q2: pred tokens [in, paris, france]
    #     vs [paris]:         P=1/3, R=1 -> F1 = 0.5
    #     vs [paris, france]: P=2/3, R=1 -> F1 = 0.8   (max = 0.8), EM 0
    # q3: unanswered -> 0
    # EM = 100 * 1/3 = 33.33 ; F1 = 100 * (1 + 0.8) / 3 = 60
    assert out["exact_match"] == approx(100 / 3)
    assert out["f1"] == approx(60.0)


def test_squad_ascii_only_punctuation_and_extra_predictions_ignored():
    refs = {"q1": ["U.S."], "q2": ["Paris"]}
    # q1: "us" == "us": EM 1.  q2: "«paris»" keeps the non-ASCII quotes -> EM 0, F1 0.
    # "zzz" is not a reference id and is ignored. EM = 50, F1 = 50.
    out = qa_scores({"q1": "US", "q2": "«Paris»", "zzz": "x"}, refs, "en", "squad")
    assert out == {"exact_match": approx(50.0), "f1": approx(50.0)}


def test_squad_empty_after_normalisation_quirk():
    # "the" and "a" both normalise to "": EM 1 but F1 0 (no common tokens) -- official behaviour
    out = qa_scores({"q": "the"}, {"q": ["a"]}, "en", "squad")
    assert out == {"exact_match": approx(100.0), "f1": approx(0.0)}


def test_qa_validation():
    with pytest.raises(ValueError, match="style"):
        qa_scores({"q": "a"}, {"q": ["a"]}, "en", "bleu")
    with pytest.raises(ValueError, match="empty"):
        qa_scores({}, {}, "en", "squad")
    with pytest.raises(ValueError, match="non-empty list"):
        qa_scores({"q": "a"}, {"q": []}, "en", "squad")


# ------------------------------------------------------------------ MLQA
def test_mlqa_unicode_punctuation():
    # «» (Pi/Pf) are removed by MLQA (not by SQuAD): "paris" == "paris"
    assert qa_scores({"q": "«Paris»"}, {"q": ["Paris"]}, "en", "mlqa")["exact_match"] == approx(100.0)
    # Spanish ¿ ? removed, article "el" removed: "rey" == "rey"
    assert qa_scores({"q": "¿el rey?"}, {"q": ["rey"]}, "es", "mlqa")["exact_match"] == approx(100.0)
    # 、 (ideographic comma, Po) removed: both -> "北 京 上 海"
    assert qa_scores({"q": "北京、上海"}, {"q": ["北京上海"]}, "zh", "mlqa")["exact_match"] == approx(100.0)


def test_mlqa_spanish_articles():
    # "los reyes de españa" -> [reyes, de, españa]; gold [reyes]: P=1/3, R=1 -> F1 = 0.5
    out = qa_scores({"q": "los reyes de España"}, {"q": ["reyes"]}, "es", "mlqa")
    assert out == {"exact_match": approx(0.0), "f1": approx(50.0)}


def test_mlqa_german_articles():
    assert qa_scores({"q": "der Hund"}, {"q": ["Hund"]}, "de", "mlqa")["exact_match"] == approx(100.0)
    # pred "die Katze und das Haus" -> [katze, und, haus]; gold "Katze, Haus" -> [katze, haus]
    # common 2: P=2/3, R=1 -> F1 = 2*(2/3)/(5/3) = 0.8
    out = qa_scores({"q": "die Katze und das Haus"}, {"q": ["Katze, Haus"]}, "de", "mlqa")
    assert out == {"exact_match": approx(0.0), "f1": approx(80.0)}
    # same strings under SQuAD rules keep der/die/das: [die, katze, und, das, haus] vs [katze, haus]
    # P=2/5, R=1 -> F1 = 2*(2/5)/(7/5) = 4/7 = 57.14
    assert qa_scores({"q": "die Katze und das Haus"}, {"q": ["Katze, Haus"]}, "de", "squad")["f1"] == approx(400 / 7)


def test_mlqa_vietnamese_articles():
    assert qa_scores({"q": "chiếc xe"}, {"q": ["xe"]}, "vi", "mlqa")["exact_match"] == approx(100.0)


def test_mlqa_arabic_al_prefix():
    # "الكتاب" -> " كتاب" -> "كتاب" == gold
    out = qa_scores({"q": "الكتاب"}, {"q": ["كتاب"]}, "ar", "mlqa")
    assert out == {"exact_match": approx(100.0), "f1": approx(100.0)}
    # the official pattern r"\sال^|ال" removes ال anywhere, also mid-word: "مالك" -> "م ك"
    assert _mlqa_normalize("مالك", "ar") == "م ك"


def test_mlqa_chinese_mixed_segmentation():
    # character tokens: [北, 京, 大, 学] vs [北, 京]: P=2/4, R=2/2 -> F1 = 2*0.5*1/1.5 = 66.67
    out = qa_scores({"q": "北京大学"}, {"q": ["北京"]}, "zh", "mlqa")
    assert out["exact_match"] == approx(0.0)
    assert out["f1"] == approx(200 / 3)
    # non-CJK runs stay whole: [清, 华, 大, 学, tsinghua, university] vs [tsinghua]
    # P=1/6, R=1 -> F1 = 2*(1/6)/(7/6) = 2/7 = 28.57
    out = qa_scores({"q": "清华大学 Tsinghua University"}, {"q": ["Tsinghua"]}, "zh", "mlqa")
    assert out["f1"] == approx(200 / 7)


def test_mlqa_hindi_no_articles():
    # "एक" (a/one) is not removed: [एक, किताब] vs [किताब]: P=1/2, R=1 -> F1 = 2/3
    out = qa_scores({"q": "एक किताब"}, {"q": ["किताब"]}, "hi", "mlqa")
    assert out == {"exact_match": approx(0.0), "f1": approx(200 / 3)}
    # nor English "the" under hi (it is under en): same arithmetic
    assert qa_scores({"q": "the book"}, {"q": ["book"]}, "hi", "mlqa")["f1"] == approx(200 / 3)
    assert qa_scores({"q": "the book"}, {"q": ["book"]}, "en", "mlqa")["f1"] == approx(100.0)
    # danda "।" is Unicode punctuation (Po) -> removed
    assert qa_scores({"q": "किताब।"}, {"q": ["किताब"]}, "hi", "mlqa")["exact_match"] == approx(100.0)


def test_mlqa_multiple_golds_and_unanswered():
    refs = {"q1": ["der Hund", "ein großer Hund"], "q2": ["Katze"]}
    # q1: "großer hund" vs [hund] -> P=1/2,R=1 -> 2/3 ; vs [großer, hund] -> EM 1, F1 1 (max)
    # q2 unanswered -> 0. EM = 50, F1 = 50
    with pytest.warns(UserWarning, match="unanswered"):
        out = qa_scores({"q1": "großer Hund"}, refs, "de", "mlqa")
    assert out == {"exact_match": approx(50.0), "f1": approx(50.0)}


def test_mlqa_unknown_language():
    with pytest.raises(ValueError, match="'fr'"):
        qa_scores({"q": "le chat"}, {"q": ["chat"]}, "fr", "mlqa")


# ------------------------------------------------------------------ seqeval
def test_tagging_pos_runs_are_chunks():
    gold = [["NOUN", "NOUN", "VERB"]]
    # seqeval reads "NOUN" as prefix "N" + type "OUN": NOUN NOUN is ONE chunk (0-1), VERB one (2-2)
    # pred [NOUN, VERB, VERB]: chunks OUN(0-0), ERB(1-2) -> no chunk matches -> F1 = 0
    # although token accuracy is 2/3
    assert tagging_f1(gold, [["NOUN", "VERB", "VERB"]]) == approx(0.0)
    # pred [NOUN, NOUN, ADJ]: OUN(0-1) correct, DJ(2-2) wrong: P=1/2, R=1/2 -> F1 = 50
    assert tagging_f1(gold, [["NOUN", "NOUN", "ADJ"]]) == approx(50.0)
    # pred [NOUN, ADJ, VERB]: OUN(0-0), DJ(1-1), ERB(2-2); only ERB correct
    # P=1/3, R=1/2 -> F1 = 2*(1/6)/(5/6) = 0.4 -> 40 (token accuracy 66.67)
    assert tagging_f1(gold, [["NOUN", "ADJ", "VERB"]]) == approx(40.0)


def test_tagging_ner_bio():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-LOC", "O"]]
    # gold chunks PER(0-1), LOC(3), LOC ; pred PER(0-1), ORG(3), LOC -> 2 of 3 correct
    # P = R = 2/3 -> F1 = 66.67
    assert tagging_f1(gold, pred) == approx(200 / 3)
    # conlleval-style: a chunk starting with I- still counts: I-PER I-PER == B-PER I-PER
    assert tagging_f1([["B-PER", "I-PER"]], [["I-PER", "I-PER"]]) == approx(100.0)


def test_tagging_validation():
    with pytest.raises(ValueError, match="length mismatch"):
        tagging_f1([["O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="sentence 0"):
        tagging_f1([["O", "O"]], [["O"]])
    with pytest.raises(ValueError, match="empty"):
        tagging_f1([], [])


# ------------------------------------------------------------------ BUCC
SCORES = {
    ("a1", "b1"): 0.9,
    ("a2", "b2"): 0.8,
    ("a3", "b9"): 0.7,
    ("a4", "b4"): 0.6,
    ("a5", "b7"): 0.5,
}
GOLD = {("a1", "b1"), ("a2", "b2"), ("a4", "b4"), ("a6", "b6")}  # a6 never a candidate


def test_bucc_f1_at_threshold():
    # >= 0.7: {a1,a2,a3}, 2 correct: P=2/3, R=2/4 -> F1 = 2*(1/3)/(7/6) = 4/7 = 57.14
    assert bucc_f1(SCORES, GOLD, 0.7) == approx(400 / 7)
    # >= 0.6 includes the pair scored exactly 0.6: 3 correct of 4, R=3/4 -> F1 = 75
    assert bucc_f1(SCORES, GOLD, 0.6) == approx(75.0)
    # >= 0.5: P=3/5, R=3/4 -> F1 = 2*(9/20)/(27/20) = 2/3
    assert bucc_f1(SCORES, GOLD, 0.5) == approx(200 / 3)
    # nothing above 0.95 -> 0
    assert bucc_f1(SCORES, GOLD, 0.95) == 0.0


def test_best_threshold():
    # F1 by cut-off: .9 -> 40, .8 -> 66.67, .7 -> 57.14, .6 -> 75, .5 -> 66.67
    # best cut at .6 -> midpoint to next score (.6 + .5) / 2 = .55
    t = best_threshold(SCORES, GOLD)
    assert t == approx(0.55)
    assert bucc_f1(SCORES, GOLD, t) == approx(75.0)


def test_best_threshold_ties_and_edges():
    # gold {g1, g2}; F1: .9 -> P1,R1/2 = 2/3 ; .8 -> 1/2 ; .7 -> 0.4 ; .6 -> P1/2,R1 = 2/3
    # tie between .9 and .6 -> the higher threshold wins: (.9 + .8) / 2 = .85
    scores = {("g1", "x"): 0.9, ("w1", "x"): 0.8, ("w2", "x"): 0.7, ("g2", "x"): 0.6}
    assert best_threshold(scores, {("g1", "x"), ("g2", "x")}) == approx(0.85)
    # candidate by candidate, as bucc_optimize: g1 -> P=1,R=1/2 = 2/3 (threshold (.9 + .9) / 2,
    # inside the tie) ; w1 -> 1/2 ; g2 -> P=2/3,R=1 = 0.8, the best, at the last candidate:
    # its own score (the official code would index past its list)
    scores = {("g1", "x"): 0.9, ("w1", "x"): 0.9, ("g2", "x"): 0.5}
    assert best_threshold(scores, {("g1", "x"), ("g2", "x")}) == approx(0.5)
    # nothing ever correct -> 0.0 (bucc_optimize's initial value)
    assert best_threshold({("w", "x"): 0.9}, {("g", "x")}) == 0.0


def test_bucc_validation():
    assert bucc_f1({}, GOLD, 0.5) == 0.0  # no candidates: nothing correct, as bucc_eval scores it
    with pytest.raises(ValueError, match="empty"):
        best_threshold(SCORES, set())


# ------------------------------------------------------------------ retrieval
def test_retrieval_accuracy():
    sim = np.array([[0.9, 0.1, 0.2],   # argmax 0 == 0  hit
                    [0.3, 0.2, 0.8],   # argmax 2 != 1  miss
                    [0.1, 0.4, 0.7]])  # argmax 2 == 2  hit
    assert retrieval_accuracy(sim) == approx(200 / 3)  # 2/3


def test_retrieval_accuracy_validation():
    with pytest.raises(ValueError, match="2-D"):
        retrieval_accuracy(np.zeros(3))
    with pytest.raises(ValueError, match="empty"):
        retrieval_accuracy(np.zeros((0, 0)))
    with pytest.raises(ValueError, match="columns"):
        retrieval_accuracy(np.zeros((3, 2)))


def test_map_at_k():
    ranked = [["a", "x", "b", "y"], ["x", "e"]]
    relevant = [{"a", "b", "c"}, {"e"}]
    # q1: hits at rank 1 (1/1) and rank 3 (2/3); / min(3, 20) = 3 -> (5/3)/3 = 5/9
    # q2: hit at rank 2 (1/2); / 1 -> 1/2
    # mean = (5/9 + 1/2) / 2 = 19/36 = 52.78
    assert map_at_k(ranked, relevant) == approx(100 * 19 / 36)
    # k = 2: q1 top-2 [a, x] -> 1/1, / min(3, 2) = 2 -> 1/2 ; q2 -> 1/2 ; mean 50
    assert map_at_k(ranked, relevant, k=2) == approx(50.0)
    # repeated item counts once but holds its rank: [a, a, b] -> (1/1 + 2/3) / 2 = 5/6
    assert map_at_k([["a", "a", "b"]], [{"a", "b"}]) == approx(100 * 5 / 6)


def test_map_at_k_validation():
    with pytest.raises(ValueError, match="length mismatch"):
        map_at_k([["a"]], [{"a"}, {"b"}])
    with pytest.raises(ValueError, match="empty"):
        map_at_k([], [])
    with pytest.raises(ValueError, match="no relevant"):
        map_at_k([["a"]], [set()])


# ------------------------------------------------------------------ aggregation
def test_transfer_gap():
    # 80 - mean(70, 60) = 15
    assert transfer_gap({"en": 80.0, "de": 70.0, "zh": 60.0}) == approx(15.0)
    with pytest.raises(ValueError, match="'en'"):
        transfer_gap({"de": 1.0})
    with pytest.raises(ValueError):
        transfer_gap({"en": 1.0})


def test_aggregation():
    assert language_average({"en": 80.0, "de": 70.0, "zh": 60.0}) == approx(70.0)
    assert qa_task_score(f1=70.0, em=50.0) == approx(60.0)
    # mean F1 = 70, mean EM = 60 -> (70 + 60) / 2 = 65
    assert task_score({"en": 80.0, "de": 60.0}, {"en": 70.0, "de": 50.0}) == approx(65.0)
    assert task_score({"en": 90.0, "de": 70.0}) == approx(80.0)
    # (70 + 65 + 60) / 3 = 65
    assert benchmark_score({"xnli": 70.0, "mlqa": 65.0, "panx": 60.0}) == approx(65.0)
    with pytest.raises(ValueError, match="different languages"):
        task_score({"en": 1.0}, {"de": 1.0})
    with pytest.raises(ValueError, match="empty"):
        benchmark_score({})
