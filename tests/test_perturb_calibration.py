"""Study 4: evaluation-time perturbations that never lose the gold answer, and calibration
metrics computed by hand (ECE over 15 equal-width bins, Brier), the reliability diagram, the
metric keys and the spec options. No Ray."""

from __future__ import annotations

import copy
import random
from collections import Counter

import pytest

from tests.conftest import small_spec_tree
from xit_dist.data.hub_schema import hub_features
from xit_dist.data.perturb import PerturbationOptions, clause_groups, perturb_row, perturb_rows, units_of
from xit_dist.errors import SpecError
from xit_dist.evaluate.calibration import BinStats, bin_index, brier_score, expected_calibration_error, qa_confidences
from xit_dist.evaluate.results import TaskResults
from xit_dist.evaluate.robustness import robustness_metrics
from xit_dist.config.load import validate_tree
from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.squad import SQUAD_SCHEMA, QAColumns

# ---------------------------------------------------------------------------------- calibration


def test_ece_and_brier_by_hand():
    confidences = [0.9, 0.9, 0.6, 0.6, 0.3]
    correct = [1, 0, 1, 1, 0]
    # bins (b/15, (b+1)/15]: 0.9 -> 13, 0.6 -> 8, 0.3 -> 4
    # |acc - conf| per bin: 13: |0.5 - 0.9| = 0.4 (2 items); 8: |1 - 0.6| = 0.4 (2); 4: |0 - 0.3| = 0.3 (1)
    # ECE = (2 * 0.4 + 2 * 0.4 + 0.3) / 5 = 0.38
    assert expected_calibration_error(confidences, correct) == pytest.approx(38.0)
    # Brier = (0.01 + 0.81 + 0.16 + 0.16 + 0.09) / 5 = 0.246
    assert brier_score(confidences, correct) == pytest.approx(24.6)


def test_bins_are_15_equal_width_right_closed():
    import numpy as np

    edges = np.array([0.0, 1 / 15, 1 / 15 + 1e-9, 0.5, 14 / 15, 14 / 15 + 1e-9, 1.0])
    assert bin_index(edges).tolist() == [0, 0, 1, 7, 13, 14, 14]


def test_perfect_calibration_is_zero_and_one_bin_errors_add_up():
    assert expected_calibration_error([0.5] * 4, [1, 0, 1, 0]) == pytest.approx(0.0)
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == pytest.approx(0.0)
    assert brier_score([1.0, 0.0], [1, 0]) == pytest.approx(0.0)
    # always confident, never right: ECE = Brier = 100
    assert expected_calibration_error([1.0] * 3, [0, 0, 0]) == pytest.approx(100.0)
    assert brier_score([1.0] * 3, [0, 0, 0]) == pytest.approx(100.0)
    stats = BinStats.of([0.95, 0.95, 0.05], [1, 1, 0])
    assert stats.count[14] == 2 and stats.count[0] == 1 and stats.total == 3
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        BinStats.of([1.2], [1])


class _StubQA:
    """Stands in for the extractive-QA format: a fixed answer and probability per question."""

    def __init__(self, answers):
        self._answers = answers

    def answers(self, task, rows, features, predictions, lang, options):
        return self._answers


def test_qa_confidence_is_the_span_probability_and_correct_is_exact_match():
    from xit_dist.tasks.formats.extractive_qa import Answer

    columns = QAColumns()
    task = Task(
        name="qa-stub", format="extractive_qa", description="", label_names=(), languages=("en",), train=None, dev=None,
        eval_source=lambda split, lang: DataSource("x", None, split, columns, SQUAD_SCHEMA),
    )
    rows = {"id": ["a", "b", "c"], "answers": [{"text": ["the teacher"]}, {"text": ["Paris", "in Paris"]}, {"text": ["bread"]}]}
    predictions = {"a": Answer("Teacher", 0.8), "b": Answer("in Paris", 0.6), "c": Answer("bread and milk", 0.9)}
    features = {"example_index": [0, 0, 1, 2]}  # question 0 has two windows
    confidences, correct = qa_confidences(_StubQA(predictions), task, rows, features, None, "en", None)
    assert confidences == [0.8, 0.6, 0.9]
    assert correct == [True, True, False]  # SQuAD normalisation drops the article and case


def test_reliability_diagram_is_a_png(tmp_path):
    import matplotlib.image

    from xit_dist.evaluate.calibration import reliability_diagram

    rng = random.Random(0)
    confidences = [rng.random() for _ in range(300)]
    series = {
        "none": BinStats.of(confidences, [rng.random() < c for c in confidences]),
        "shuffle": BinStats.of(confidences, [rng.random() < c * 0.6 for c in confidences]),
    }
    path = reliability_diagram(series, tmp_path / "r.png", "demo")
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 300


# ---------------------------------------------------------------------------------- perturbations

CONTEXT = "The teacher buys 3 old apples in Paris. The doctor sells bread in London, and the pilot sings."
ROLES = {"context": "context", "question": "question", "answers": "answers"}


def qa(context=CONTEXT, answers=("3 old apples",), question="who buys apples in Paris ?") -> dict:
    return {
        "id": "q", "title": "t", "context": context, "question": question,
        "answers": {"text": list(answers), "answer_start": [context.index(a) for a in answers]},
    }


def answers_in_place(row) -> bool:
    return all(row["context"][s : s + len(t)] == t for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"]))


def test_units_merge_the_tokens_of_an_answer():
    start = CONTEXT.index("3 old apples")
    units, separator = units_of(CONTEXT, [(start, start + len("3 old apples"))])
    texts = [CONTEXT[u.start : u.end] for u in units]
    assert separator == " " and "3 old apples" in texts and "3" not in texts
    assert [CONTEXT[u.start : u.end] for u in units if u.protected] == ["3 old apples"]
    chars, separator = units_of("老师在巴黎买苹果。")
    assert separator == "" and len(chars) == 9


def test_shuffle_permutes_within_windows_and_keeps_the_answer():
    options = PerturbationOptions(kind="shuffle", window=3, apply_to=["question", "context"])
    row = qa()
    out = perturb_row(row, 0, ROLES, options)
    assert answers_in_place(out) and out["answers"]["text"] == ["3 old apples"]
    before = units_of(CONTEXT, [(CONTEXT.index("3 old apples"), CONTEXT.index("3 old apples") + 12)])[0]
    pieces = [CONTEXT[u.start : u.end] for u in before]
    after = out["context"].split(" ")
    # the units are the same, as a multiset, and each window of 3 keeps its members
    assert Counter(" ".join(after).replace("3 old apples", "\0").split()) == Counter(
        " ".join(pieces).replace("3 old apples", "\0").split()
    )
    rebuilt = out["context"].replace("3 old apples", "3_old_apples").split()
    original = [p.replace(" ", "_") for p in pieces]
    for begin in range(0, len(original), 3):
        assert sorted(rebuilt[begin : begin + 3]) == sorted(original[begin : begin + 3])
    assert out["context"] != CONTEXT and out["question"] != row["question"]
    assert perturb_row(row, 0, ROLES, options) == out  # seeded
    assert perturb_row(row, 1, ROLES, options) != out  # per row


def test_clause_reorder_moves_whole_clauses():
    options = PerturbationOptions(kind="clause_reorder", apply_to=["context"])
    out = perturb_row(qa(), 0, ROLES, options)
    clauses = ["The teacher buys 3 old apples in Paris.", "The doctor sells bread in London,", "and the pilot sings."]
    assert out["context"] != CONTEXT
    assert sorted(out["context"].split(" ")) == sorted(CONTEXT.split(" "))
    for clause in clauses:
        assert clause in out["context"]
    assert answers_in_place(out)
    assert len(clause_groups(CONTEXT, units_of(CONTEXT)[0])) == 3


def test_delete_never_touches_the_answer():
    options = PerturbationOptions(kind="delete", rate=0.5, apply_to=["context"])
    kept_lengths = []
    for index in range(50):
        out = perturb_row(qa(), index, ROLES, options)
        assert answers_in_place(out) and "3 old apples" in out["context"]
        kept_lengths.append(len(out["context"].split()))
    words = len(CONTEXT.split()) - 3  # the answer's 3 tokens are one protected unit
    assert 0.35 * words < sum(kept_lengths) / 50 - 3 < 0.65 * words  # about half of the rest deleted


@pytest.mark.parametrize("kind", ["shuffle", "clause_reorder", "delete"])
def test_every_perturbation_keeps_all_gold_answers_on_a_dataset(kind):
    """SQuAD-validation style rows: several gold answers, overlapping ones, CJK text."""
    import datasets

    zh = "老师在巴黎买苹果。医生在伦敦卖面包，飞行员唱歌。"
    rows = [
        qa(answers=("3 old apples", "apples", "old apples")),
        qa(answers=("London",)),
        qa(answers=("teacher", "The teacher")),
        qa(context=zh, answers=("苹果",), question="谁 买 苹果 ?"),
        qa(context=zh, answers=("伦敦",), question="医生在哪里卖面包？"),
    ] * 10
    for i, row in enumerate(rows):
        row["id"] = str(i)
    dataset = datasets.Dataset.from_list(rows, features=hub_features(SQUAD_SCHEMA))
    source = DataSource("google/xtreme", "XQuAD.en", "validation", QAColumns(), SQUAD_SCHEMA)
    out = perturb_rows(dataset, source, PerturbationOptions(kind=kind, apply_to=["question", "context"], rate=0.3))
    assert len(out) == len(dataset)
    changed = 0
    for before, after in zip(dataset.to_list(), out.to_list()):
        assert answers_in_place(after), after
        assert after["answers"]["text"] == before["answers"]["text"]
        changed += after["context"] != before["context"]
    assert changed > len(rows) // 2


def test_a_row_whose_answer_cannot_be_found_keeps_its_context():
    row = qa()
    row["answers"] = {"text": ["nowhere"], "answer_start": [0]}
    out = perturb_row(row, 0, ROLES, PerturbationOptions(kind="shuffle", apply_to=["context"]))
    assert out["context"] == CONTEXT


# ---------------------------------------------------------------------------------- keys and spec


def test_robustness_metric_keys_by_hand(tmp_path):
    per_language = {"en": {"f1": 80.0, "exact_match": 70.0}, "de": {"f1": 60.0, "exact_match": 50.0}}
    robustness = {"perturbed": {"shuffle": {"en": {"f1": 70.0, "exact_match": 60.0}, "de": {"f1": 40.0, "exact_match": 30.0}}}}
    metrics = robustness_metrics("xquad", per_language, robustness)
    assert metrics["xquad.f1.de.shuffle"] == 40.0
    assert metrics["xquad.f1.avg.shuffle"] == 55.0
    assert metrics["xquad.f1.drop.shuffle"] == pytest.approx(70.0 - 55.0)
    assert metrics["xquad.exact_match.drop.shuffle"] == pytest.approx(60.0 - 45.0)
    results = TaskResults("xquad", "test", per_language, {"en": 10, "de": 10}, None, robustness)
    assert metrics.items() <= results.mlflow_metrics().items()
    assert "xquad.f1.en" in results.mlflow_metrics()
    written = {p.name for p in results.write(tmp_path)}
    assert "xquad_perturbations.csv" in written
    lines = (tmp_path / "xquad_perturbations.csv").read_text().splitlines()
    assert lines[0] == "perturbation,language,f1,exact_match" and lines[3] == "shuffle,en,70.0000,60.0000"


def test_evaluation_key_is_unchanged_without_perturbations_and_changes_with_them():
    from xit_dist.evaluate.zero_shot import evaluation_key
    from xit_dist.evaluate.job import EvalJob
    from xit_dist.tasks.formats.options import FormatOptions

    base = dict(phase_id="p", task="xnli", model_dir=None, data_dir=None, data_revision=None, split="test", languages=["en"],
                batch_size=8, options=FormatOptions(), max_examples_per_language=None, bf16=False, cpus_per_worker=1)
    plain = EvalJob(**base)
    assert "perturbations" not in str(plain.model_dump(exclude={"perturbations", "calibration"}))
    perturbed = EvalJob(**base, perturbations=[PerturbationOptions(kind="delete", apply_to=["text_b"])])
    assert evaluation_key(plain) != evaluation_key(perturbed)
    assert evaluation_key(plain) == evaluation_key(EvalJob(**base))


def test_evaluation_key_changes_when_a_metric_definition_changes(monkeypatch):
    """A cached evaluation scored by an old definition of a metric is not reused."""
    from xit_dist.evaluate import zero_shot
    from xit_dist.evaluate.job import EvalJob
    from xit_dist.tasks.formats.options import FormatOptions

    job = EvalJob(phase_id="p", task="xnli", model_dir=None, data_dir=None, data_revision=None, split="test", languages=["en"],
                  batch_size=8, options=FormatOptions(), max_examples_per_language=None, bf16=False, cpus_per_worker=1)
    before = zero_shot.evaluation_key(job)
    monkeypatch.setattr(zero_shot, "SCORING_VERSION", "older")
    older = zero_shot.evaluation_key(job)
    assert older != before
    monkeypatch.setattr(zero_shot, "metric_library_versions", lambda: {"seqeval": "0.0.12"})
    assert zero_shot.evaluation_key(job) not in (before, older)


def test_spec_perturbation_options(tmp_path):
    tree = small_spec_tree(tmp_path)
    tree["evaluation"]["perturbations"] = [{"kind": "shuffle", "apply_to": ["text_b"], "window": 4}, {"kind": "delete", "name": "drop20", "rate": 0.2, "apply_to": ["text_a", "text_b"]}]
    spec = validate_tree(tree)
    assert [p.name for p in spec.evaluation.perturbations] == ["shuffle", "drop20"]
    bad = copy.deepcopy(tree)
    bad["evaluation"]["perturbations"][0]["apply_to"] = ["context"]
    with pytest.raises(SpecError, match=r"evaluation\.perturbations\.0\.apply_to \['context'\]: this task's columns offer \['text_a', 'text_b'\]"):
        validate_tree(bad)
    bad = copy.deepcopy(tree)
    bad["evaluation"]["perturbations"][0]["kind"] = "scramble"
    with pytest.raises(SpecError, match=r"evaluation\.perturbations\.0\.kind"):
        validate_tree(bad)
    bad = copy.deepcopy(tree)
    bad["evaluation"]["calibration"] = True
    with pytest.raises(SpecError, match="evaluation.calibration: xnli .* calibration covers extractive QA"):
        validate_tree(bad)


# ---------------------------------------------------------------------------------- evaluation


def test_qa_evaluation_with_calibration_and_perturbations_on_the_demo(tmp_path):
    """The evaluation code path of a target phase (rank 0 of 1, no Ray): XQuAD demo data, a tiny
    QA model, calibration and two perturbations: every metric key, the reliability bins'
    totals, the perturbed copies really differ, and the artifacts (CSV, one PNG per language)."""
    import json

    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from xit_dist.builtin.assets import resolve_data_dir, resolve_model_dir
    from xit_dist.data.features import evaluation_inputs
    from xit_dist.evaluate.robustness import robustness_part
    from xit_dist.evaluate.zero_shot import evaluate_languages
    from xit_dist.tasks.registry import get_task
    from xit_dist.evaluate.job import EvalJob
    from xit_dist.tasks.formats.options import FormatOptions

    model_dir, data_dir = resolve_model_dir("builtin:xlmr-tiny"), resolve_data_dir("builtin:demo")
    torch.manual_seed(0)
    model = AutoModelForQuestionAnswering.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    perturbations = [
        PerturbationOptions(kind="shuffle", apply_to=["question", "context"]),
        PerturbationOptions(kind="delete", name="delete30", rate=0.3, apply_to=["context"]),
    ]
    options = FormatOptions(max_seq_length=96, doc_stride=32, max_query_length=24)
    job = EvalJob(phase_id="p", task="xquad", model_dir=None, data_dir=str(data_dir), data_revision=None, split="test",
                  languages=["en", "zh"], batch_size=32, options=options, max_examples_per_language=40, bf16=False,
                  cpus_per_worker=1, perturbations=perturbations, calibration=True)
    evaluation = evaluate_languages(model, tokenizer, job, 0, 1, torch.device("cpu"), verbose=False)
    assert set(evaluation["results"]) == {"en", "zh"} and set(evaluation["perturbed"]) == {"shuffle", "delete30"}
    for scores in [*evaluation["results"].values(), *(s for p in evaluation["perturbed"].values() for s in p.values())]:
        assert list(scores) == ["f1", "exact_match", "ece", "brier"]
        assert all(0.0 <= value <= 100.0 for value in scores.values())
    assert set(evaluation["reliability"]) == {f"{lang}.{name}" for lang in ("en", "zh") for name in ("none", "shuffle", "delete30")}
    assert all(sum(bins["count"]) == 40 for bins in evaluation["reliability"].values())  # one confidence per question
    task = get_task("xquad")
    source = task.eval_source("test", "zh")
    clean, _ = evaluation_inputs(task, source, tokenizer, options, data_dir, limit=40)
    shuffled, _ = evaluation_inputs(task, source, tokenizer, options, data_dir, limit=40, perturbation=perturbations[0])
    assert sum(a != b for a, b in zip(clean["context"], shuffled["context"])) > 20
    for row in shuffled.to_list():
        assert all(row["context"][s : s + len(t)] == t for t, s in zip(row["answers"]["text"], row["answers"]["answer_start"]))
    json.dumps(evaluation)  # what the phase record and the evaluation cache store

    results = TaskResults("xquad", "test", evaluation["results"], evaluation["counts"], None, robustness_part(evaluation))
    metrics = results.mlflow_metrics()
    for key in ("xquad.ece.zh", "xquad.brier.en", "xquad.f1.zh.shuffle", "xquad.ece.en.delete30", "xquad.brier.avg.shuffle",
                "xquad.exact_match.drop.delete30"):
        assert key in metrics, key
    written = {path.name for path in results.write(tmp_path)}
    assert {"xquad_perturbations.csv", "xquad_reliability_en.png", "xquad_reliability_zh.png"} <= written
