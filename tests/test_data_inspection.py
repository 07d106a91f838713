"""Task data as a run sees it: the multi-source ANLI+ task, the GLUE pair tasks on the demo
data, `xit-dist data` and `xit-dist languages`, and one-line errors for malformed files."""

from __future__ import annotations

import json

import pytest

from xit_dist.builtin.assets import resolve_data_dir, resolve_model_dir
from xit_dist.cli import main
from xit_dist.data.features import training_features
from xit_dist.data.loading import load_source
from xit_dist.errors import DataError
from xit_dist.tasks.registry import get_task
from xit_dist.tasks.languages import benchmark_languages, language, resource_groups, task_languages
from xit_dist.tasks.formats.options import FormatOptions


@pytest.fixture(scope="module")
def demo_dir():
    return resolve_data_dir("builtin:demo")


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_dir("builtin:xlmr-tiny"))


def test_anli_plus_concatenates_its_sources_and_drops_snli_rows_without_gold(demo_dir, tokenizer):
    task = get_task("anli_plus")
    sizes = {source.describe(): len(load_source(source, demo_dir)) for source in task.train_sources}
    snli = load_source(task.train_sources[3], demo_dir)
    no_gold = sum(1 for label in snli["label"] if label == -1)
    assert no_gold > 0
    features = training_features(task, tokenizer, FormatOptions(max_seq_length=64), demo_dir)
    assert len(features) == sum(sizes.values()) - no_gold
    assert set(features["labels"]) == {0, 1, 2}


@pytest.mark.parametrize("name, labels", [("qqp", {0, 1}), ("sst2", {0, 1}), ("mnli", {0, 1, 2})])
def test_glue_tasks_featurise_with_their_label_sets(name, labels, demo_dir, tokenizer):
    features = training_features(get_task(name), tokenizer, FormatOptions(max_seq_length=64), demo_dir)
    assert set(features["labels"]) == labels
    assert features.column_names == ["input_ids", "attention_mask", "labels"]


def test_data_command_reports_rows_labels_lengths_and_drops(capsys):
    assert main(["data", "anli_plus", "--data-files", "builtin:demo"]) == 0
    out = capsys.readouterr().out
    assert "snli:train" in out and "anli:train_r3" in out
    assert "dropped 25 rows: label -1 is not one of" in out
    assert "labels: " in out and "p50/p90/p95/p99/p100" in out


def test_data_command_on_an_evaluation_split_per_language(capsys):
    assert main(["data", "xnli", "--split", "test", "--lang", "en", "--lang", "zh", "--data-files", "builtin:demo"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("xtreme:test ") and "—" not in line]
    assert [line.split()[1:3] for line in lines] == [["en", "200"], ["zh", "200"]]


def _write_mnli(root, lines):
    path = root / "nyu-mll" / "glue" / "mnli" / "train.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"premise": "a", "hypothesis": "b", "label": 1, "idx": 1', "row 2: invalid JSON"),
        ('{"premise": "a", "hypothesis": "b", "label": "maybe", "idx": 1}', "row 2: label: 'maybe' is not one of"),
        ('{"premise": "a", "label": 1, "idx": 1}', "row 2: missing column 'hypothesis'"),
        ('{"premise": "a", "hypothesis": "b", "label": [1], "idx": 1}', "row 2: label: expected a class id or name"),
    ],
)
def test_malformed_rows_are_named_by_file_and_row(tmp_path, capsys, bad_line, message):
    good = json.dumps({"premise": "a", "hypothesis": "b", "label": 0, "idx": 0})
    path = _write_mnli(tmp_path, [good, bad_line])
    with pytest.raises(DataError) as err:
        load_source(get_task("mnli").train, tmp_path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert main(["data", "mnli", "--data-files", str(tmp_path)]) == 2
    ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("xit-dist")]
    assert len(ours) == 1 and str(path) in ours[0]


def test_language_metadata_covers_both_benchmarks():
    assert len(benchmark_languages("xtreme")) == 40
    assert len(benchmark_languages("xtreme-r")) == 50
    assert len(task_languages("udpos")) == 33 and len(task_languages("udpos", "xtreme-r")) == 38
    assert len(task_languages("panx", "xtreme-r")) == 48 and len(task_languages("tatoeba", "xtreme-r")) == 41
    assert task_languages("xcopa") == task_languages("xcopa", "xtreme-r")  # only in XTREME-R
    assert language("sw").resource_group == "low" and language("en").resource_group == "high"
    assert language("ru").script == "Cyrillic" and language("fi").family == "Uralic"
    groups = resource_groups(task_languages("xnli"))
    assert sum(map(len, groups.values())) == 15 and all(groups.values())


def test_languages_command(capsys):
    assert main(["languages", "--benchmark", "xtreme-r"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()[1:]
    assert len(rows) == 50
