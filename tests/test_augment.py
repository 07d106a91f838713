"""Study 3: adversarial augmentation of intermediate training rows (hub schema, before
featurisation): each kind by hand, the rate, the seed, replace vs add, and QA answers that
stay exactly where ``answer_start`` says. No Ray."""

from __future__ import annotations

import copy
import random
from collections import Counter

import pytest

from tests.conftest import small_spec_tree
from xit_dist.data.augment import (
    AugmentOptions,
    append_clause,
    augment_pair_row,
    augment_qa_row,
    augment_rows,
    distractor_sentence,
    misspell,
)
from xit_dist.data.hub_schema import hub_features
from xit_dist.errors import SpecError
from xit_dist.plan.phases import build_plan
from xit_dist.config.load import validate_tree
from xit_dist.tasks.base import DataSource, PairColumns
from xit_dist.tasks.mnli import MNLI_COLUMNS, MNLI_SCHEMA
from xit_dist.tasks.squad import SQUAD_SCHEMA, QAColumns

PREMISE = "A man plays the guitar on stage."
HYPOTHESIS = "The man is performing."
ROW = {"premise": PREMISE, "hypothesis": HYPOTHESIS, "label": 0, "idx": 0}
EVERY = AugmentOptions(rate=1.0)


def pair(kind: str, seed: int = 0) -> dict:
    return augment_pair_row(ROW, MNLI_COLUMNS, kind, EVERY, random.Random(seed))


def test_nli_stress_tests_by_hand():
    assert pair("word_overlap") == {**ROW, "hypothesis": "The man is performing and true is true."}
    assert pair("negation") == {**ROW, "hypothesis": "The man is performing and false is not true."}
    assert pair("length_mismatch")["premise"] == "A man plays the guitar on stage " + " ".join(["and true is true"] * 5) + "."
    assert pair("length_mismatch")["hypothesis"] == HYPOTHESIS
    assert append_clause("no punctuation", "and true is true") == "no punctuation and true is true"


def test_spelling_swaps_two_adjacent_characters_of_one_word():
    for seed in range(20):
        edited = pair("spelling", seed)["hypothesis"]
        changed = [(a, b) for a, b in zip(HYPOTHESIS.split(), edited.split()) if a != b]
        assert len(changed) == 1
        before, after = changed[0]
        diff = [i for i, (x, y) in enumerate(zip(before, after)) if x != y]
        assert len(diff) == 2 and diff[1] == diff[0] + 1
        assert before[diff[0]] == after[diff[1]] and before[diff[1]] == after[diff[0]]
    assert misspell("a b", random.Random(0)) == "a b"  # no word of 3+ characters: unchanged


def test_character_and_word_noise_edit_but_keep_most_of_the_text():
    long_premise = " ".join(f"word{i}" for i in range(20))
    row = {**ROW, "premise": long_premise}
    options = AugmentOptions(rate=1.0, noise=0.1)
    noisy = augment_pair_row(row, MNLI_COLUMNS, "char_noise", options, random.Random(1))
    changed = [a for a, b in zip(long_premise.split(), noisy["premise"].split()) if a != b]
    assert len(noisy["premise"].split()) == 20 and len(changed) == 2  # 10% of 20 words, one edit each
    dropped = augment_pair_row(row, MNLI_COLUMNS, "word_noise", options, random.Random(1))["premise"].split()
    assert dropped != long_premise.split()
    assert set(dropped) <= set(long_premise.split()) and len(dropped) >= 15


def mnli_rows(n: int):
    import datasets

    rows = [{"premise": f"premise {i} is here.", "hypothesis": f"hypothesis {i}.", "label": i % 3, "idx": i} for i in range(n)]
    return datasets.Dataset.from_list(rows, features=hub_features(MNLI_SCHEMA))


MNLI_SOURCE = DataSource("nyu-mll/glue", "mnli", "train", MNLI_COLUMNS, MNLI_SCHEMA)


def augmented_indices(rows, out) -> list[int]:
    return [i for i, (a, b) in enumerate(zip(rows, out)) if a != b]


def test_rate_seed_and_replace_mode():
    rows = mnli_rows(2000)
    out = augment_rows(rows, MNLI_SOURCE, AugmentOptions(rate=0.3, seed=5))
    assert len(out) == len(rows) and out["label"] == rows["label"] and out["idx"] == rows["idx"]
    changed = augmented_indices(rows.to_list(), out.to_list())
    assert 600 - 80 < len(changed) < 600 + 80  # binomial(2000, 0.3): 600 +- 4 sigma
    again = augment_rows(rows, MNLI_SOURCE, AugmentOptions(rate=0.3, seed=5))
    assert again.to_list() == out.to_list()
    other = augment_rows(rows, MNLI_SOURCE, AugmentOptions(rate=0.3, seed=6))
    assert augmented_indices(rows.to_list(), other.to_list()) != changed
    kinds = Counter()
    for before, after in zip(rows.to_list(), out.to_list()):
        if before == after:
            continue
        if after["hypothesis"].endswith("and true is true."):
            kinds["word_overlap"] += 1
        elif after["hypothesis"].endswith("and false is not true."):
            kinds["negation"] += 1
        elif after["premise"].count("true is true") == 5:
            kinds["length_mismatch"] += 1
    assert all(count > 50 for count in kinds.values()) and len(kinds) == 3  # uniform over 6 kinds: ~100 each


def test_add_mode_appends_the_augmented_copies():
    rows = mnli_rows(300)
    out = augment_rows(rows, MNLI_SOURCE, AugmentOptions(rate=0.2, seed=1, mode="add", kinds=["negation"]))
    assert out.to_list()[:300] == rows.to_list()
    extra = out.to_list()[300:]
    assert 30 < len(extra) < 90
    for row in extra:
        original = rows[row["idx"]]
        assert row["label"] == original["label"] and row["premise"] == original["premise"]
        assert row["hypothesis"] == original["hypothesis"][:-1] + " and false is not true."


# ---------------------------------------------------------------------------------- QA

SQUAD_COLUMNS = QAColumns()
SQUAD_SOURCE = DataSource("rajpurkar/squad", "plain_text", "train", SQUAD_COLUMNS, SQUAD_SCHEMA)
CONTEXT = "The teacher buys 3 old apples in Paris. The doctor sells bread in London, and the pilot sings."


def qa_row(answer: str, question: str = "Who buys apples in Paris in 2010?", qid: str = "q") -> dict:
    return {"id": qid, "title": "t", "context": CONTEXT, "question": question,
            "answers": {"text": [answer], "answer_start": [CONTEXT.index(answer)]}}


def answers_in_place(row: dict) -> bool:
    return all(
        row["context"][start : start + len(text)] == text
        for text, start in zip(row["answers"]["text"], row["answers"]["answer_start"])
    )


def test_distractor_resembles_the_question_and_leaves_the_answer_where_it_was():
    row = qa_row("teacher")
    out = augment_qa_row(row, SQUAD_COLUMNS, "distractor", EVERY, random.Random(0))
    assert out["context"].startswith(CONTEXT + " ")
    assert out["answers"] == row["answers"] and answers_in_place(out)
    sentence = out["context"][len(CONTEXT) + 1 :]
    words = sentence.rstrip(".").split()
    assert words[:3] == ["Who", "buys", "apples"]  # the question's frame
    assert "Paris" not in words and "2010" not in words  # its entity and number changed
    assert "teacher" not in sentence  # never the gold answer


def test_distractor_by_hand_on_a_question_without_entities():
    sentence = distractor_sentence("who buys apples ?", CONTEXT, ["teacher"], random.Random(3))
    assert sentence is not None and sentence.endswith(".") and "teacher" not in sentence
    words = sentence[:-1].split()
    assert words[0] == "who" and len(words) == 4  # 3 question words (one replaced) + a one-word fake answer


def many_qa_rows(n: int):
    import datasets

    answers = ["teacher", "3 old apples", "Paris", "doctor", "bread", "London", "pilot"]
    rows = [qa_row(answers[i % len(answers)], question=f"Which thing number {i} happens in Paris?", qid=str(i)) for i in range(n)]
    return datasets.Dataset.from_list(rows, features=hub_features(SQUAD_SCHEMA))


@pytest.mark.parametrize("kind", ["distractor", "char_noise", "word_noise"])
def test_every_qa_augmentation_keeps_answer_start_valid(kind):
    rows = many_qa_rows(120)
    out = augment_rows(rows, SQUAD_SOURCE, AugmentOptions(rate=0.8, seed=2, kinds=[kind], noise=0.3))
    changed = augmented_indices(rows.to_list(), out.to_list())
    assert len(changed) > 60
    for row in out.to_list():
        assert answers_in_place(row), row


def test_augment_is_part_of_the_phase_hash_and_checked_against_the_format(tmp_path):
    tree = small_spec_tree(tmp_path)
    augmented = copy.deepcopy(tree)
    augmented["intermediate"][0]["augment"] = {"rate": 0.2, "kinds": ["negation"]}
    other_rate = copy.deepcopy(augmented)
    other_rate["intermediate"][0]["augment"]["rate"] = 0.3
    hashes = {build_plan(validate_tree(t))[0].hash for t in (tree, augmented, other_rate)}
    assert len(hashes) == 3
    augmented["intermediate"][0]["augment"]["kinds"] = ["distractor"]
    with pytest.raises(SpecError, match=r"intermediate\.0: augment\.kinds: \['distractor'\] not offered for 'mnli'"):
        validate_tree(augmented)


def test_pair_columns_without_second_text_augment_the_first():
    columns = PairColumns(text_a="sentence", text_b=None, label="label")
    row = {"sentence": "a fine film .", "label": 1}
    out = augment_pair_row(row, columns, "negation", EVERY, random.Random(0))
    assert out == {"sentence": "a fine film and false is not true.", "label": 1}
