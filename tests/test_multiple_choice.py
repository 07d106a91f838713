"""The multiple-choice format (HellaSwag, CommonsenseQA, Cosmos QA, COPA / XCOPA): fixtures in
the hub schemas read through the real loader, featurisation, dropped rows, padding, scoring,
and one real Ray + DeepSpeed run (HellaSwag -> XCOPA) on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xit_dist.data.loading import load_source
from xit_dist.tasks.registry import get_task
from xit_dist.tasks.commonsenseqa import commonsenseqa_source
from xit_dist.tasks.cosmosqa import cosmosqa_source
from xit_dist.tasks.formats import get_format
from xit_dist.tasks.hellaswag import hellaswag_source
from xit_dist.tasks.xcopa import copa_source
from xit_dist.tasks.formats.options import FormatOptions

FMT = get_format("multiple_choice")
OPTIONS = FormatOptions(max_seq_length=64)


def write_jsonl(root: Path, relative: str, rows: list[dict]) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def hellaswag_row(ind: int, ctx_a: str, ctx_b: str, endings: list[str], label: str) -> dict:
    return {
        "ind": ind, "activity_label": "Cooking", "ctx_a": ctx_a, "ctx_b": ctx_b, "ctx": f"{ctx_a} {ctx_b}".strip(),
        "endings": endings, "source_id": f"activitynet~v_{ind}", "split": "val", "split_type": "indomain", "label": label,
    }


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    """A local mirror in the hub layouts, with good rows and every kind of bad row."""
    root = tmp_path_factory.mktemp("mc-mirror")
    write_jsonl(root, "Rowan/hellaswag/default/validation.jsonl", [
        hellaswag_row(0, "The cook heats a pan.", "the cook", ["adds oil.", "sings.", "runs away.", "sleeps."], "0"),
        hellaswag_row(1, "A man opens a door.", "", ["He walks in.", "He flies.", "He melts.", "He is a door."], "3"),
        hellaswag_row(2, "Only three endings.", "", ["a.", "b.", "c."], "1"),
        hellaswag_row(3, "Hidden label.", "", ["a.", "b.", "c.", "d."], ""),
        hellaswag_row(4, "  ", "", ["a.", "b.", "c.", "d."], "2"),
        hellaswag_row(5, "Odd label.", "", ["a.", "b.", "c.", "d."], "7"),
    ])
    keys = ["A", "B", "C", "D", "E"]
    write_jsonl(root, "tau/commonsense_qa/default/validation.jsonl", [
        {"id": "q1", "question": "Where do you keep milk?", "question_concept": "milk",
         "choices": {"label": keys, "text": ["fridge", "oven", "roof", "car", "shoe"]}, "answerKey": "A"},
        # the key is looked up in the row's own labels, not assumed to be in A..E order
        {"id": "q2", "question": "What barks?", "question_concept": "bark",
         "choices": {"label": ["E", "D", "C", "B", "A"], "text": ["cat", "dog", "fish", "bird", "cow"]}, "answerKey": "D"},
        {"id": "q3", "question": "Unanswerable?", "question_concept": "x",
         "choices": {"label": keys, "text": ["a", "b", "c", "d", "e"]}, "answerKey": "F"},
        {"id": "q4", "question": "Test row?", "question_concept": "x",
         "choices": {"label": keys, "text": ["a", "b", "c", "d", "e"]}, "answerKey": ""},
    ])
    write_jsonl(root, "allenai/cosmos_qa/default/validation.jsonl", [
        {"id": "c1", "context": "I missed the bus.", "question": "Why was I late?", "answer0": "The bus left early.",
         "answer1": "I flew.", "answer2": "It rained fish.", "answer3": "None of the above choices .", "label": 0},
        {"id": "c2", "context": "I lost my keys.", "question": "What happened next?", "answer0": "I found them.",
         "answer1": "", "answer2": "I sang.", "answer3": "I slept.", "label": 0},
        {"id": "c3", "context": "A test row.", "question": "What?", "answer0": "a", "answer1": "b", "answer2": "c",
         "answer3": "d", "label": -1},
    ])
    write_jsonl(root, "aps/super_glue/copa/validation.jsonl", [
        {"premise": "The man turned on the faucet.", "choice1": "The toilet filled with water.",
         "choice2": "Water flowed from the spout.", "question": "effect", "idx": 0, "label": 1},
        {"premise": "My body cast a shadow.", "choice1": "The sun was rising.", "choice2": "The grass was cut.",
         "question": "cause", "idx": 1, "label": 0},
        {"premise": "A premise.", "choice1": "One.", "choice2": "Two.", "question": "why", "idx": 2, "label": 0},
    ])
    write_jsonl(root, "cambridgeltl/xcopa/sw/test.jsonl", [
        {"premise": "Mtu alifungua bomba.", "choice1": "Choo kilijaa maji.", "choice2": "Maji yalitoka.",
         "question": "effect", "label": 1, "idx": 0, "changed": False},
        {"premise": "Kivuli.", "choice1": "Jua.", "choice2": "Nyasi.", "question": "cause", "label": 2, "idx": 1,
         "changed": True},
    ])
    return root


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from xit_dist.builtin.assets import resolve_model_dir

    return AutoTokenizer.from_pretrained(resolve_model_dir("builtin:xlmr-tiny"))


def featurized(task_name: str, source, mirror: Path, tokenizer):
    task = get_task(task_name)
    rows = load_source(source, mirror)
    return task, rows, FMT.featurize(task, rows, source, tokenizer, OPTIONS, for_eval=True)


def segments(tokenizer, ids: list[int]) -> tuple[list[int], list[int]]:
    """(context ids, choice ids) of a ``<s> context </s></s> choice </s>`` encoding."""
    sep = tokenizer.sep_token_id
    first_end = ids.index(sep)
    return ids[1:first_end], ids[first_end + 2 : -1]


def encoded(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# --- featurisation ------------------------------------------------------------------------------


def test_hellaswag_shapes_prefix_and_string_labels(mirror, tokenizer):
    task, rows, features = featurized("hellaswag", hellaswag_source("validation"), mirror, tokenizer)
    assert len(rows) == 6 and len(features) == 2
    assert features.column_names == ["input_ids", "attention_mask", "labels"]
    assert list(features["labels"]) == [0, 3]
    first = features[0]
    assert len(first["input_ids"]) == 4 and len(first["attention_mask"]) == 4
    assert [len(ids) for ids in first["input_ids"]] == [len(mask) for mask in first["attention_mask"]]
    # context is ctx_a; every choice is ctx_b followed by the ending (the jiant / SWAG recipe)
    assert segments(tokenizer, first["input_ids"][0])[0] == encoded(tokenizer, "The cook heats a pan.")
    assert segments(tokenizer, first["input_ids"][0])[1] == encoded(tokenizer, "the cook adds oil.")
    assert segments(tokenizer, first["input_ids"][1])[1] == encoded(tokenizer, "the cook sings.")
    assert segments(tokenizer, features[1]["input_ids"][0])[1] == encoded(tokenizer, "He walks in.")  # empty ctx_b: no prefix
    assert FMT.feature_lengths(features) == [max(map(len, f)) for f in features["input_ids"]]


def test_commonsenseqa_looks_the_answer_key_up_in_the_rows_labels(mirror, tokenizer):
    _, _, features = featurized("commonsenseqa", commonsenseqa_source("validation"), mirror, tokenizer)
    assert list(features["labels"]) == [0, 1]  # "D" is the second entry of ["E", "D", ...]
    assert [len(choices) for choices in features["input_ids"]] == [5, 5]
    assert segments(tokenizer, features[1]["input_ids"][1])[1] == encoded(tokenizer, "dog")


def test_cosmosqa_context_is_passage_then_question(mirror, tokenizer):
    _, _, features = featurized("cosmosqa", cosmosqa_source("validation"), mirror, tokenizer)
    assert len(features) == 1 and features[0]["labels"] == 0
    assert segments(tokenizer, features[0]["input_ids"][0])[0] == encoded(tokenizer, "I missed the bus. Why was I late?")


def test_copa_and_xcopa_turn_the_question_into_a_connective(mirror, tokenizer):
    _, _, copa = featurized("xcopa", copa_source("validation"), mirror, tokenizer)
    assert list(copa["labels"]) == [1, 0]
    assert segments(tokenizer, copa[0]["input_ids"][0])[0] == encoded(tokenizer, "The man turned on the faucet. so")
    assert segments(tokenizer, copa[1]["input_ids"][1])[0] == encoded(tokenizer, "My body cast a shadow. because")
    task = get_task("xcopa")
    _, _, sw = featurized("xcopa", task.eval_source("test", "sw"), mirror, tokenizer)
    assert len(sw) == 1 and sw[0]["labels"] == 1 and len(sw[0]["input_ids"]) == 2
    assert task.eval_source("test", "en") == copa_source("validation")  # English: COPA (test labels hidden)


def test_truncation_keeps_every_choice_within_max_seq_length(mirror, tokenizer):
    task = get_task("cosmosqa")
    source = cosmosqa_source("validation")
    rows = load_source(source, mirror)
    features = FMT.featurize(task, rows, source, tokenizer, FormatOptions(max_seq_length=12), for_eval=True)
    lengths = [len(ids) for choices in features["input_ids"] for ids in choices]
    assert max(lengths) == 12 and all(length <= 12 for length in lengths)


# --- bad rows -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task_name, source, expected",
    [
        ("hellaswag", hellaswag_source("validation"), [
            (2, "3 choices, expected 4"),
            (3, "no gold label (label '')"),
            (4, "empty context (ctx_a)"),
            (5, "label '7' is not one of ['0', '1', '2', '3']"),
        ]),
        ("commonsenseqa", commonsenseqa_source("validation"), [
            (2, "answerKey 'F' is not one of choices.label ['A', 'B', 'C', 'D', 'E']"),
            (3, "no gold label (answerKey '')"),
        ]),
        ("cosmosqa", cosmosqa_source("validation"), [(1, "empty choice 1"), (2, "no gold label (label -1)")]),
        ("xcopa", copa_source("validation"), [(2, "question 'why' is not one of ['cause', 'effect']")]),
    ],
)
def test_row_problems_name_each_dropped_row(mirror, task_name, source, expected):
    task = get_task(task_name)
    rows = load_source(source, mirror)
    assert list(FMT.row_problems(task, rows, source)) == expected


def test_xcopa_label_out_of_range_is_reported(mirror):
    task = get_task("xcopa")
    source = task.eval_source("test", "sw")
    assert list(FMT.row_problems(task, load_source(source, mirror), source)) == [
        (1, "label 2 is not a choice index 0..1")
    ]


def test_label_counts_use_the_choice_names(mirror):
    task = get_task("hellaswag")
    source = hellaswag_source("validation")
    counts = FMT.label_counts(task, load_source(source, mirror), source)
    assert counts == {"0": 1, "3": 1, "1": 1, "2": 1, "(no valid label)": 2}


# --- batches, predictions, scores ---------------------------------------------------------------


def test_collator_pads_every_choice_of_the_batch_to_one_length(mirror, tokenizer):
    _, _, features = featurized("hellaswag", hellaswag_source("validation"), mirror, tokenizer)
    batch = FMT.collator(tokenizer)([features[0], features[1]])
    longest = max(len(ids) for choices in features["input_ids"] for ids in choices)
    assert batch["input_ids"].shape[:2] == (2, 4) and batch["input_ids"].shape[2] >= longest
    assert batch["input_ids"].shape[2] % 8 == 0
    assert batch["attention_mask"].shape == batch["input_ids"].shape
    assert batch["labels"].tolist() == [0, 3]
    for row in range(2):
        for choice in range(4):
            real = len(features[row]["input_ids"][choice])
            assert batch["attention_mask"][row, choice].tolist() == [1] * real + [0] * (batch["input_ids"].shape[2] - real)
            assert (batch["input_ids"][row, choice, real:] == tokenizer.pad_token_id).all()


class FixedScores(torch.nn.Module):
    """Stands in for a model: returns the given logits for any batch."""

    def __init__(self, logits: list[list[float]]):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, input_ids, attention_mask):
        assert input_ids.dim() == 3 and attention_mask.shape == input_ids.shape
        return type("Output", (), {"logits": self.logits})()


def test_predict_returns_the_argmax_choice_and_its_probability():
    batch = {"input_ids": torch.ones(2, 2, 5, dtype=torch.long), "attention_mask": torch.ones(2, 2, 5, dtype=torch.long),
             "labels": torch.tensor([0, 1])}
    predictions = FMT.predict(FixedScores([[0.0, 0.0], [0.0, 2.0]]), batch, OPTIONS)
    assert [choice for choice, _ in predictions] == [0, 1]  # a tie goes to the first choice
    assert predictions[0][1] == pytest.approx(0.5)
    assert predictions[1][1] == pytest.approx(1 / (1 + torch.exp(torch.tensor(-2.0)).item()), abs=1e-6)


def test_score_is_accuracy_over_rows_and_chance_is_one_over_choices(mirror, tokenizer):
    task, rows, features = featurized("hellaswag", hellaswag_source("validation"), mirror, tokenizer)
    assert FMT.score(task, rows, features, [(0, 0.9), (1, 0.4)], "en", OPTIONS) == {"accuracy": 50.0}
    assert FMT.score(task, rows, features, [(0, 0.9), (3, 0.4)], "en", OPTIONS) == {"accuracy": 100.0}
    assert FMT.chance(task) == 25.0
    assert FMT.chance(get_task("commonsenseqa")) == 20.0 and FMT.chance(get_task("xcopa")) == 50.0


def test_the_model_class_scores_each_choice_once(tokenizer, mirror):
    from xit_dist.builtin.assets import resolve_model_dir

    task, _, features = featurized("commonsenseqa", commonsenseqa_source("validation"), mirror, tokenizer)
    model = FMT.model_class().from_pretrained(resolve_model_dir("builtin:xlmr-tiny"), **FMT.label_config(task))
    batch = FMT.collator(tokenizer)([features[0], features[1]])
    output = model(**batch)
    assert output.logits.shape == (2, 5) and output.loss.ndim == 0


# --- demo data ----------------------------------------------------------------------------------


def test_demo_xcopa_is_parallel_across_languages_and_balanced():
    from xit_dist.builtin.demo_formats import multiple_choice as demo
    from xit_dist.builtin.demo_data import DemoWorld

    files = demo.files(DemoWorld.build(0))
    copa_test = files["aps/super_glue/copa/test.jsonl"]
    assert {row["label"] for row in copa_test} == {-1}  # SuperGLUE hides COPA's test labels
    for language in demo.XCOPA_DEMO_CONFIGS:
        for split in ("validation", "test"):
            rows = files[f"cambridgeltl/xcopa/{language}/{split}.jsonl"]
            english = files[f"aps/super_glue/copa/{split}.jsonl"]
            assert [r["question"] for r in rows] == [r["question"] for r in english]
            assert [r["idx"] for r in rows] == list(range(len(rows)))
            assert sum(r["label"] for r in rows) == len(rows) // 2
            assert rows[0]["premise"] != english[0]["premise"]
    assert set(files) >= {"Rowan/hellaswag/default/test.jsonl", "tau/commonsense_qa/default/train.jsonl",
                          "allenai/cosmos_qa/default/validation.jsonl"}


# --- one real run -------------------------------------------------------------------------------


@pytest.mark.ray
def test_hellaswag_then_xcopa_on_ray_and_deepspeed(ray_cluster, tmp_path):
    from mlflow.tracking import MlflowClient

    from tests.conftest import small_spec_tree
    from xit_dist.run.scheduler import run_experiment
    from xit_dist.config.load import validate_tree

    tree = small_spec_tree(tmp_path, intermediate=("hellaswag",), target="xcopa", name="mc")
    tree["intermediate"][0]["training"].update(max_steps=30, log_every_n_steps=10)
    tree["target"]["training"].update(epochs=2, max_steps=40, log_every_n_steps=10)  # demo COPA: 25 steps per epoch
    tree["evaluation"].update(languages=["en", "sw", "zh"], max_examples_per_language=100)
    summary = run_experiment(validate_tree(tree))

    hellaswag, xcopa = summary.phases
    for outcome, steps in ((hellaswag, 30), (xcopa, 40)):
        assert [step for step, _ in outcome.record["losses"]] == list(range(10, steps + 1, 10))
        assert outcome.record["world_size"] == 2
    target_losses = [loss for _, loss in xcopa.record["losses"]]
    assert target_losses[-1] < target_losses[0] - 0.05, target_losses
    assert xcopa.record["init_dir"] == str(hellaswag.output_dir)

    metrics = summary.results.mlflow_metrics()
    assert set(metrics) == {"xcopa.accuracy.en", "xcopa.accuracy.sw", "xcopa.accuracy.zh", "xcopa.accuracy.avg",
                            "xcopa.transfer_gap"}
    assert all(0.0 <= metrics[f"xcopa.accuracy.{lang}"] <= 100.0 for lang in ("en", "sw", "zh"))
    # the demo's COPA validation has 100 rows, its XCOPA test 200 per language (capped at 100)
    assert summary.results.counts == {"en": 100, "sw": 100, "zh": 100}
    assert summary.results.chance == 50.0
    assert metrics["xcopa.accuracy.en"] > 60.0, metrics  # 2 choices: chance is 50
    run = MlflowClient(summary.tracking_uri).get_run(summary.parent_run_id)
    for lang in ("en", "sw", "zh"):
        assert run.data.metrics[f"xcopa.accuracy.{lang}"] == summary.results.per_language[lang]["accuracy"]
