"""Local copies of hub data read exactly as the hub's: the mirror layout under the hub's real
config names, one file for one split, Parquet files whose ClassLabel names come in another
order, and one line naming file and row for a label out of range. No Ray."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xit_dist.cli import main
from xit_dist.data.loading import load_source
from xit_dist.errors import DataError
from xit_dist.tasks.registry import get_task
from xit_dist.tasks.anli_plus import anli_source, snli_source
from xit_dist.tasks.udpos import udpos_source

NLI_ROW = {"premise": "a cat sleeps", "hypothesis": "an animal sleeps", "idx": 0}


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_parquet(path, columns: dict, features: dict):
    from datasets import Dataset, Features

    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_dict(columns, features=Features(features)).to_parquet(str(path))
    return path


def test_anli_and_snli_mirrors_sit_under_the_hubs_only_config_plain_text(tmp_path):
    anli_row = {"uid": "u1", "premise": "p", "hypothesis": "h", "label": 2, "reason": ""}
    write_jsonl(tmp_path / "facebook/anli/plain_text/train_r1.jsonl", [anli_row])
    write_jsonl(tmp_path / "stanfordnlp/snli/plain_text/train.jsonl", [{"premise": "p", "hypothesis": "h", "label": 0}] * 2)
    assert len(load_source(anli_source("train_r1"), tmp_path)) == 1
    assert len(load_source(snli_source("train"), tmp_path)) == 2


def test_a_missing_local_file_names_every_name_tried_and_the_layout(tmp_path):
    with pytest.raises(DataError) as err:
        load_source(get_task("mnli").train, tmp_path)
    message = str(err.value)
    assert message.startswith(f"{tmp_path}/nyu-mll/glue/mnli/train.{{jsonl,json,parquet,csv,tsv}}: not found")
    assert "<hub_id>/<config>/<split>.<ext>" in message and "\n" not in message


def test_data_command_reads_one_file_as_the_one_split_asked_for(tmp_path, capsys):
    path = write_jsonl(tmp_path / "my_mnli.jsonl", [{**NLI_ROW, "label": i % 3} for i in range(6)])
    assert main(["data", "mnli", "--data-files", str(path)]) == 0
    table = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("glue:train")]
    assert table and table[0][1:4] == ["en", "6", "0"]


def test_data_command_refuses_one_file_where_the_split_has_several_sources(tmp_path, capsys):
    path = write_jsonl(tmp_path / "nli.jsonl", [{**NLI_ROW, "label": 0}])
    assert main(["data", "anli_plus", "--data-files", str(path)]) == 2
    ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("xit-dist")]
    assert len(ours) == 1 and str(path) in ours[0] and "<hub_id>/<config>/<split>.<ext>" in ours[0]


def test_parquet_class_names_in_another_order_are_mapped_by_name(tmp_path):
    from datasets import ClassLabel, Value

    names = ["contradiction", "entailment", "neutral"]  # the hub's order: entailment, neutral, contradiction
    written = ["contradiction", "entailment", "neutral", "entailment", None]
    columns = {
        "premise": ["p"] * 5, "hypothesis": ["h"] * 5, "idx": list(range(5)),
        "label": [names.index(name) if name else -1 for name in written],
    }
    features = {"premise": Value("string"), "hypothesis": Value("string"), "label": ClassLabel(names=names), "idx": Value("int32")}
    write_parquet(tmp_path / "nyu-mll/glue/mnli/train.parquet", columns, features)
    rows = load_source(get_task("mnli").train, tmp_path)
    label = rows.features["label"]
    assert list(label.names) == ["entailment", "neutral", "contradiction"]
    assert [label.int2str(i) if i >= 0 else None for i in rows["label"]] == written


def test_parquet_tag_lists_with_another_class_order_are_mapped_by_name(tmp_path):
    from datasets import ClassLabel, List, Value

    names = ["X", "VERB", "NOUN"]
    columns = {"tokens": [["dogs", "bark", "xyz"]], "pos_tags": [[2, 1, 0]]}
    features = {"tokens": List(Value("string")), "pos_tags": List(ClassLabel(names=names))}
    write_parquet(tmp_path / "google/xtreme/udpos.English/train.parquet", columns, features)
    rows = load_source(udpos_source("train", "en"), tmp_path)
    assert rows.features["pos_tags"].feature.int2str(rows["pos_tags"][0]) == ["NOUN", "VERB", "X"]


def test_parquet_class_names_the_hub_lacks_are_one_line_naming_file_and_column(tmp_path):
    from datasets import ClassLabel, Value

    features = {"premise": Value("string"), "hypothesis": Value("string"), "label": ClassLabel(names=["yes", "no", "maybe"]), "idx": Value("int32")}
    path = write_parquet(tmp_path / "nyu-mll/glue/mnli/train.parquet", {"premise": ["p"], "hypothesis": ["h"], "label": [0], "idx": [0]}, features)
    with pytest.raises(DataError) as err:
        load_source(get_task("mnli").train, tmp_path)
    assert str(err.value).startswith(f"{path}: column 'label': class names ['yes', 'no', 'maybe'] are not among the hub's")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_class_id_out_of_range_is_named_by_file_and_row(tmp_path, suffix):
    rows = [{**NLI_ROW, "label": 1}, {**NLI_ROW, "label": 7}]
    path = tmp_path / f"nyu-mll/glue/mnli/train{suffix}"
    if suffix == ".jsonl":
        write_jsonl(path, rows)
    else:
        from datasets import Value

        features = {"premise": Value("string"), "hypothesis": Value("string"), "label": Value("int64"), "idx": Value("int32")}
        write_parquet(path, {name: [row[name] for row in rows] for name in features}, features)
    with pytest.raises(DataError) as err:
        load_source(get_task("mnli").train, tmp_path)
    assert str(err.value).startswith(f"{path}: row 2: label: class id 7 is out of range for 3 classes")


# ---------------------------------------------------------------- rows the format drops


def test_data_command_numbers_dropped_rows_from_1_as_errors_do(tmp_path, capsys):
    write_jsonl(tmp_path / "nyu-mll/glue/mnli/train.jsonl", [{**NLI_ROW, "label": 0}, {**NLI_ROW, "label": -1}])
    assert main(["data", "mnli", "--data-files", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "    row 2: label -1 is not one of ['entailment', 'neutral', 'contradiction']" in out
    assert "row 1:" not in out


def _snli_rows_without_gold(demo: Path) -> list[int]:
    lines = (demo / "stanfordnlp/snli/plain_text/train.jsonl").read_text(encoding="utf-8").splitlines()
    return [number for number, line in enumerate(lines, 1) if json.loads(line)["label"] == -1]


def test_phase_record_counts_each_training_splits_dropped_rows():
    from types import SimpleNamespace
    from xit_dist.config.spec import TrainingConfig

    from xit_dist.builtin.assets import resolve_data_dir
    from xit_dist.data.drops import phase_drop_record

    demo = resolve_data_dir("builtin:demo")
    job = SimpleNamespace(task="anli_plus", stage=None, data_dir=str(demo), data_revision=None, training=TrainingConfig(max_train_examples=None))
    record = phase_drop_record(job)
    assert list(record) == [source.describe() for source in get_task("anli_plus").train_sources]
    snli = record["stanfordnlp/snli[plain_text] split train"]
    no_gold = _snli_rows_without_gold(demo)
    assert snli["dropped"] == len(no_gold) > 0 and snli["first_rows"] == no_gold[:5]
    assert snli["reasons"] == {"label -1 is not one of ['entailment', 'neutral', 'contradiction']": len(no_gold)}
    assert all(entry["dropped"] == 0 for name, entry in record.items() if "snli" not in name)


def test_preflight_says_each_training_split_that_drops_rows(tmp_path, capsys):
    from tests.conftest import small_spec_tree

    from xit_dist.builtin.assets import resolve_data_dir
    from xit_dist.plan.preflight import preflight
    from xit_dist.config.load import validate_tree

    preflight(validate_tree(small_spec_tree(tmp_path, intermediate=("anli_plus",), target="xnli")))
    lines = [line for line in capsys.readouterr().out.splitlines() if "dropped" in line]
    no_gold = _snli_rows_without_gold(resolve_data_dir("builtin:demo"))
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        f"anli_plus: stanfordnlp/snli[plain_text] split train: dropped {len(no_gold)} of 1200 rows: "
        f"label -1 is not one of ['entailment', 'neutral', 'contradiction'] ({len(no_gold)}); "
        f"rows {', '.join(map(str, no_gold[:5]))}, ..."
    )


# ---------------------------------------------------------------- XTREME-R's Romanian XQuAD


def _squad_json(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    context = "Bucureşti este capitala României."
    qas = [{"id": "q1", "question": "Care este capitala?", "answers": [{"text": "Bucureşti", "answer_start": 0}]},
           {"id": "q2", "question": "A cui capitală?", "answers": [{"text": "României", "answer_start": 23}]}]
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}), encoding="utf-8")
    return path


def test_romanian_xquad_is_read_from_the_release_file_not_a_hub_config(tmp_path):
    task = get_task("xquad")
    assert "ro" in task.benchmark_languages("xtreme-r") and "ro" not in task.languages
    source = task.eval_source("test", "ro")
    assert source.hub_id != "google/xtreme"  # the hub has XQuAD.ar ... XQuAD.zh, no XQuAD.ro
    _squad_json(tmp_path / "xquad.ro.json")
    rows = load_source(source, tmp_path)
    assert rows["id"] == ["q1", "q2"] and rows["answers"][1] == {"answer_start": [23], "text": ["României"]}
    mirror = tmp_path / "mirror"
    _squad_json(mirror / "google-deepmind/xquad/xquad.ro.json")
    assert len(load_source(source, mirror)) == 2


def test_romanian_xquad_missing_says_where_to_get_it(tmp_path):
    source = get_task("xquad").eval_source("test", "ro")
    for directory in (None, tmp_path):
        with pytest.raises(DataError) as err:
            load_source(source, directory)
        message = str(err.value)
        assert "\n" not in message and "https://github.com/google-deepmind/xquad" in message and "data.task_files.xquad" in message


@pytest.mark.parametrize("task, lang, where", [("udpos", "pl", "UD v2.7"), ("tatoeba", "az", "LASER")])
def test_xtreme_r_languages_without_a_hub_config_say_where_they_come_from(task, lang, where):
    with pytest.raises(DataError) as err:
        load_source(get_task(task).eval_source("test", lang), None)
    message = str(err.value)
    assert "no usable hub copy" in message and where in message and f"data.task_files.{task}" in message
