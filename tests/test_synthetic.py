"""The offline demo assets: benchmark files in the hub schemas, and the built-in tiny XLM-R."""

from __future__ import annotations

import collections
import json
import threading
import time
import unicodedata
from pathlib import Path

import pytest

from xit_dist.builtin.demo_data import DEMO_LANGUAGES, demo_corpus, write_demo_benchmark
from xit_dist.builtin.publish import publish_once
from xit_dist.builtin.models import TINY_CONFIGS, build_builtin_model

NLI_LABEL_NAMES = {"entailment", "neutral", "contradiction"}

# Field names and Python types of each file, as the hub datasets define them.
MNLI_SCHEMA = {"premise": str, "hypothesis": str, "label": int, "idx": int}
XNLI_SCHEMA = {"sentence1": str, "sentence2": str, "language": str, "gold_label": str}
PAWSX_SCHEMA = {"sentence1": str, "sentence2": str, "label": str}

EXPECTED_ROWS = {
    "nyu-mll/glue/mnli/train.jsonl": 3000,
    "nyu-mll/glue/mnli/validation_matched.jsonl": 300,
    "nyu-mll/glue/mnli/validation_mismatched.jsonl": 300,
    "google/xtreme/XNLI/validation.jsonl": 200 * len(DEMO_LANGUAGES["xnli"]),
    "google/xtreme/XNLI/test.jsonl": 200 * len(DEMO_LANGUAGES["xnli"]),
    **{
        f"google/xtreme/PAWS-X.{language}/{split}.jsonl": rows
        for language in DEMO_LANGUAGES["pawsx"]
        for split, rows in {"train": 2000 if language == "en" else 300, "validation": 200, "test": 200}.items()
    },
}


def read_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def schema_of(relative_path: str) -> dict[str, type]:
    if relative_path.startswith("nyu-mll/glue/mnli/"):
        return MNLI_SCHEMA
    if relative_path.startswith("google/xtreme/XNLI/"):
        return XNLI_SCHEMA
    return PAWSX_SCHEMA


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of every file, to tell whether anything was rewritten."""
    return {str(path.relative_to(root)): (path.stat().st_ino, path.stat().st_mtime_ns) for path in root.rglob("*")}


@pytest.fixture(scope="module")
def benchmark(tmp_path_factory) -> Path:
    return write_demo_benchmark(tmp_path_factory.mktemp("demo") / "benchmark", seed=0)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_builtin_model("xlmr-tiny", tmp_path_factory.mktemp("models") / "xlmr-tiny", seed=0)


# --- benchmark files ----------------------------------------------------------------------------


def test_benchmark_has_the_expected_files_and_row_counts(benchmark):
    files = {str(path.relative_to(benchmark)): path for path in benchmark.rglob("*.jsonl")}
    assert set(EXPECTED_ROWS) <= set(files)  # the format modules add theirs (xit_dist/builtin/demo_formats)
    for relative_path, expected in EXPECTED_ROWS.items():
        assert len(read_rows(files[relative_path])) == expected, relative_path
    manifest = json.loads((benchmark / "MANIFEST.json").read_text(encoding="utf-8"))
    assert manifest["seed"] == 0
    assert {path: manifest["rows"][path] for path in EXPECTED_ROWS} == EXPECTED_ROWS
    assert set(files) <= set(manifest["rows"])


def test_every_task_with_demo_data_loads_through_the_hub_loader(benchmark):
    """Each task's demo splits, in each of its demo languages, read by the same code as the hub
    path: the schemas the generators write are exactly the ones the tasks declare."""
    from xit_dist.data.loading import load_source
    from xit_dist.tasks.registry import get_task

    manifest = json.loads((benchmark / "MANIFEST.json").read_text(encoding="utf-8"))
    assert {"xnli", "pawsx", "squad", "xquad", "udpos", "panx", "hellaswag", "xcopa", "tatoeba", "bucc"} <= set(manifest["languages"])
    for name, languages in manifest["languages"].items():
        task = get_task(name)
        for source in task.train_sources:
            assert len(load_source(source, benchmark)) > 0, (name, source.describe())
        for split in task.eval_splits:
            for lang in languages:
                assert len(load_source(task.eval_source(split, lang), benchmark)) > 0, (name, split, lang)


def test_every_row_has_the_hub_fields_and_types(benchmark):
    for relative_path in EXPECTED_ROWS:
        schema = schema_of(relative_path)
        for row in read_rows(benchmark / relative_path):
            assert list(row) == list(schema), relative_path
            for field, expected_type in schema.items():
                assert type(row[field]) is expected_type, (relative_path, field, row)
                if expected_type is str:
                    assert row[field] and row[field] == unicodedata.normalize("NFKC", row[field])


def test_label_values_follow_the_hub_conventions(benchmark):
    for split in ("train", "validation_matched", "validation_mismatched"):
        rows = read_rows(benchmark / f"nyu-mll/glue/mnli/{split}.jsonl")
        assert {row["label"] for row in rows} == {0, 1, 2}
        assert [row["idx"] for row in rows] == list(range(len(rows)))
    for split in ("validation", "test"):
        rows = read_rows(benchmark / f"google/xtreme/XNLI/{split}.jsonl")
        assert {row["gold_label"] for row in rows} == NLI_LABEL_NAMES
    for language in DEMO_LANGUAGES["pawsx"]:
        rows = read_rows(benchmark / f"google/xtreme/PAWS-X.{language}/train.jsonl")
        assert {row["label"] for row in rows} == {"0", "1"}


def test_labels_are_balanced_in_every_file_and_language(benchmark):
    for relative_path in EXPECTED_ROWS:
        rows = read_rows(benchmark / relative_path)
        counts = collections.Counter((row.get("language"), row.get("label", row.get("gold_label"))) for row in rows)
        for language in {language for language, _ in counts}:
            per_label = [count for (row_language, _), count in counts.items() if row_language == language]
            assert max(per_label) - min(per_label) <= 1, (relative_path, language, counts)


def test_every_demo_language_is_present_and_xnli_is_parallel(benchmark):
    for split in ("validation", "test"):
        rows = read_rows(benchmark / f"google/xtreme/XNLI/{split}.jsonl")
        by_language = collections.defaultdict(list)
        for row in rows:
            by_language[row["language"]].append(row["gold_label"])
        assert set(by_language) == set(DEMO_LANGUAGES["xnli"])
        assert all(labels == by_language["en"] for labels in by_language.values())  # same items, translated
    for language in DEMO_LANGUAGES["pawsx"]:
        assert (benchmark / f"google/xtreme/PAWS-X.{language}").is_dir()
    en_test = read_rows(benchmark / "google/xtreme/PAWS-X.en/test.jsonl")
    zh_test = read_rows(benchmark / "google/xtreme/PAWS-X.zh/test.jsonl")
    assert [row["label"] for row in zh_test] == [row["label"] for row in en_test]
    assert zh_test[0]["sentence1"] != en_test[0]["sentence1"]


def test_generation_is_byte_identical_across_writes(benchmark, tmp_path):
    again = write_demo_benchmark(tmp_path / "again", seed=0)
    files = sorted(path.relative_to(benchmark) for path in benchmark.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(again) for path in again.rglob("*") if path.is_file())
    for relative_path in files:
        assert (benchmark / relative_path).read_bytes() == (again / relative_path).read_bytes(), relative_path
    assert demo_corpus(0) == demo_corpus(0)


def test_second_write_returns_at_once_without_rewriting(benchmark):
    before = snapshot(benchmark)
    started = time.perf_counter()
    assert write_demo_benchmark(benchmark, seed=0) == benchmark
    assert time.perf_counter() - started < 0.5
    assert snapshot(benchmark) == before
    assert not [path for path in benchmark.parent.iterdir() if path.name.startswith(".")]  # no staging left


# --- build-once publishing ------------------------------------------------------------------------


def write_file_slowly(directory: Path) -> dict:
    (directory / "payload.txt").write_text("payload", encoding="utf-8")
    time.sleep(0.2)
    return {"files": 1}


def test_publish_once_replaces_a_stale_build_but_not_a_foreign_directory(tmp_path):
    root = tmp_path / "asset"
    publish_once(root, marker="marker.json", identity={"version": 1}, build=write_file_slowly)
    publish_once(root, marker="marker.json", identity={"version": 2}, build=write_file_slowly)
    assert json.loads((root / "marker.json").read_text())["version"] == 2

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        publish_once(foreign, marker="marker.json", identity={"version": 1}, build=write_file_slowly)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_publish_once_is_safe_when_callers_race(tmp_path):
    root = tmp_path / "asset"
    results, errors = [], []

    def publish():
        try:
            results.append(publish_once(root, marker="marker.json", identity={"version": 1}, build=write_file_slowly))
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=publish) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and results == [root] * 3
    assert sorted(path.name for path in root.iterdir()) == ["marker.json", "payload.txt"]
    assert [path.name for path in tmp_path.iterdir()] == ["asset"]  # staging directories cleaned up


# --- built-in tiny XLM-R --------------------------------------------------------------------------


def test_tokenizer_has_xlmr_special_ids_and_pair_template(tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model, local_files_only=True)
    special_ids = (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id)
    assert special_ids == (0, 1, 2, 3)
    assert tokenizer.cls_token_id == 0 and tokenizer.sep_token_id == 2
    assert tokenizer.mask_token_id == len(tokenizer) - 1
    assert 1000 <= len(tokenizer) <= 4000

    ids = tokenizer("teacher buys apples.", "someone buys things.")["input_ids"]
    first_end = ids.index(2)
    assert ids[0] == 0 and ids[first_end : first_end + 2] == [2, 2] and ids[-1] == 2
    assert ids.count(2) == 3


def test_tokenizer_round_trips_demo_text_without_unknowns(tiny_model, benchmark):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model, local_files_only=True)
    texts = [row["sentence1"] for row in read_rows(benchmark / "google/xtreme/XNLI/test.jsonl")]
    texts += [row["sentence2"] for row in read_rows(benchmark / "google/xtreme/PAWS-X.ja/test.jsonl")]
    encoded = tokenizer(texts)["input_ids"]
    assert not any(tokenizer.unk_token_id in ids for ids in encoded)
    for text, ids in zip(texts[::50], encoded[::50]):
        assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_tiny_model_loads_offline_for_sequence_classification(tiny_model):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model, local_files_only=True)
    config = AutoConfig.from_pretrained(tiny_model, local_files_only=True)
    assert config.model_type == "xlm-roberta"
    assert config.vocab_size == len(tokenizer)
    assert (config.type_vocab_size, config.pad_token_id, config.bos_token_id, config.eos_token_id) == (1, 1, 0, 2)
    assert {key: getattr(config, key) for key in TINY_CONFIGS["xlmr-tiny"]} == TINY_CONFIGS["xlmr-tiny"]
    assert (tiny_model / "model.safetensors").is_file()

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=3, local_files_only=True)
    premises, hypotheses = ["teacher buys apples.", "nobody buys apples."], ["someone buys things."] * 2
    batch = tokenizer(premises, hypotheses, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 3)


def test_builtin_model_build_is_idempotent(tiny_model):
    before = snapshot(tiny_model)
    started = time.perf_counter()
    assert build_builtin_model("xlmr-tiny", tiny_model, seed=0) == tiny_model
    assert time.perf_counter() - started < 0.5
    assert snapshot(tiny_model) == before


def test_unknown_builtin_model_names_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match="xlmr-small.*xlmr-tiny"):
        build_builtin_model("xlmr-huge", tmp_path / "model")
