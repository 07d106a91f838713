"""The spec: every user mistake is one line naming the field or file, exit code 2, before Ray."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from xit_dist.cli import main
from xit_dist.errors import SpecError
from xit_dist.config.load import apply_override, load_spec

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "ray_configs" / "demo.yaml"


def test_every_shipped_spec_validates():
    for path in sorted([*(REPO / "ray_configs").glob("*.yaml"), *(REPO / "ray_configs" / "demos").glob("*.yaml")]):
        load_spec(path)


def test_the_format_demos_cover_every_trainable_format_and_retrieval():
    from xit_dist.tasks.registry import get_task

    formats = {get_task(load_spec(path).target.task).format for path in (REPO / "ray_configs" / "demos").glob("*.yaml")}
    assert formats == {"extractive_qa", "token_tagging", "multiple_choice", "retrieval"}  # pair classification: demo.yaml


def test_overrides_are_typed_and_reach_lists():
    spec = load_spec(DEMO, ["distributed.num_workers=16", "intermediate.0.training.learning_rate=2e-5", "distributed.bf16=true"])
    assert spec.distributed.num_workers == 16
    assert spec.intermediate[0].training.learning_rate == 2e-5
    assert spec.distributed.bf16 is True


@pytest.mark.parametrize(
    "override, expected",
    [
        ("target.task=xnlii", "target.task: unknown task 'xnlii'; known: anli_plus, bucc, ccg, "),
        ("intermediate.0.task=nope", "intermediate.0.task: unknown task 'nope'"),
        ("bogus_key=1", "bogus_key: unknown key"),
        ("target.training.lr=1", "target.training.lr: unknown key"),
        ("target.training.batch_size=abc", "target.training.batch_size: Input should be a valid integer"),
        ("target.training.learning_rate=-1e-5", "target.training.learning_rate: Input should be greater than 0"),
        ("distributed.num_workers=0", "distributed.num_workers: Input should be greater than or equal to 1"),
        ("distributed.deepspeed_config=zero5", "distributed.deepspeed_config: unknown deepspeed config 'zero5'; known: zero0, zero1, zero2, zero3, zero3_offload"),
        ("distributed.deepspeed_config=/no/such/ds.json", "distributed.deepspeed_config: deepspeed config file not found: /no/such/ds.json"),
        ("model.name_or_path=./no/such/model", "model.name_or_path: model directory not found: ./no/such/model"),
        ("data.local_dir=/no/such/dir", "data.local_dir: data directory not found: /no/such/dir"),
        ("evaluation.languages=[en,xx]", "evaluation.languages: ['xx'] not in xnli's languages"),
        ("target.training.batch_size=33", "target.training.batch_size: 33 is not a multiple of micro_batch_size x num_workers"),
    ],
)
def test_bad_field_gives_one_line_and_exit_2(override, expected, capsys):
    assert main(["validate", str(DEMO), "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"xit-dist: error: {DEMO}: ")
    assert expected in err


def test_bad_yaml_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntarget:\n  task: [xnli\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"xit-dist: error: {bad}: line ") and "invalid YAML" in err


def test_missing_spec_file(capsys):
    assert main(["validate", "/no/such/spec.yaml"]) == 2
    assert capsys.readouterr().err.strip() == "xit-dist: error: /no/such/spec.yaml: spec file not found"


def test_bad_set_syntax():
    with pytest.raises(SpecError, match="expected KEY=VALUE"):
        apply_override({}, "no_equals_sign")
    with pytest.raises(SpecError, match="list index '3' out of range"):
        apply_override({"intermediate": [{}]}, "intermediate.3.task=mnli")


def test_validate_prints_the_resolved_spec(capsys):
    assert main(["validate", str(DEMO), "--set", "seed=7"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["seed"] == 7
    assert resolved["target"]["training"]["adam_epsilon"] == 1e-8  # defaults are filled in


def test_run_with_missing_data_file_fails_before_ray(tmp_path):
    """A data mirror without the files: one line naming the file, exit 2, no Ray started."""
    empty = tmp_path / "mirror"
    empty.mkdir()
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "xit_dist.cli", "run", str(DEMO), "--set", f"data.local_dir={empty}",
         "--set", f"output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"xit-dist: error: {empty}/nyu-mll/glue/mnli/train.{{jsonl,json,parquet,csv,tsv}}: not found "
                    "(local copy of nyu-mll/glue[mnli] split train; a mirror is laid out as <hub_id>/<config>/<split>.<ext>)")
    assert "Ray" not in proc.stdout + proc.stderr
    assert time.monotonic() - started < 60


def test_run_with_wrong_schema_names_file_and_columns(tmp_path):
    mirror = tmp_path / "mirror" / "nyu-mll" / "glue" / "mnli"
    mirror.mkdir(parents=True)
    (mirror / "train.jsonl").write_text('{"sentence1": "a", "sentence2": "b", "label": 0}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "xit_dist.cli", "run", str(DEMO), "--set", f"data.local_dir={tmp_path / 'mirror'}",
         "--set", f"output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"xit-dist: error: {mirror / 'train.jsonl'}: missing column(s) ['premise', 'hypothesis', 'idx']; "
        "expected the hub schema ['premise', 'hypothesis', 'label', 'idx']"
    )


def test_every_config_file_opens_with_the_command_that_runs_it():
    configs = [*(REPO / "ray_configs").rglob("*.yaml"), *(REPO / "ds_configs").glob("*.json"), *(REPO / "cluster").glob("*.yaml")]
    assert len(configs) >= 10
    for path in configs:
        first = path.read_text().splitlines()[0]
        assert first.startswith(("# ", "// ")), path
        assert any(tool in path.read_text().split("\n\n")[0] for tool in ("xit-dist", "kubectl", "ray up")), path
    for path in (REPO / "cluster").glob("*.yaml"):
        assert all(doc is not None for doc in yaml.safe_load_all(path.read_text()))  # kubectl takes several documents


def test_override_inside_a_scalar_is_one_line():
    with pytest.raises(SpecError, match=r"^--set name: not a mapping"):
        load_spec(DEMO, ["name.x=1"])


# ---------------------------------------------------------------- spec files that are not UTF-8

NOT_UTF8 = {
    "binary": (bytes(range(128, 256)), "not UTF-8 text (byte 1 is 0x80); save it as UTF-8"),
    "utf16": ("name: x\n".encode("utf-16"), "the file is UTF-16 text; save it as UTF-8"),
}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("kind", sorted(NOT_UTF8))
@pytest.mark.parametrize("command", ["validate", "plan", "run", "submit", "tune", "report"])
def test_a_spec_file_that_is_not_utf8_is_one_line(tmp_path, capsys, kind, command):
    content, message = NOT_UTF8[kind]
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(content)
    argv = [command, str(spec)] + (["--address", "http://127.0.0.1:1"] if command == "submit" else [])
    if command == "report":  # a file given to report is read as a grid file
        argv += ["--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    assert main(argv) == 2
    assert _one_error_line(capsys) == f"xit-dist: error: {spec}: {message}"


def test_a_grid_base_or_search_base_that_is_not_utf8_names_that_file(tmp_path, capsys):
    base = tmp_path / "base.yaml"
    base.write_bytes("name: x\n".encode("utf-16"))
    grid = tmp_path / "grid.yaml"
    grid.write_text("# grid\nbase: base.yaml\naxes: {seed: [0, 1]}\n")
    assert main(["validate", str(grid)]) == 2
    assert _one_error_line(capsys) == f"xit-dist: error: {base}: the file is UTF-16 text; save it as UTF-8"
    search = tmp_path / "search.yaml"
    search.write_text("base: base.yaml\nintermediate: mnli\nspace: {learning_rate: {loguniform: [1.0e-6, 1.0e-4]}}\n")
    assert main(["tune", str(search)]) == 2
    assert _one_error_line(capsys) == f"xit-dist: error: base: {base}: the file is UTF-16 text; save it as UTF-8"


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(b"\xef\xbb\xbf" + DEMO.read_bytes())
    assert load_spec(spec).name == load_spec(DEMO).name


# ------------------------------------------------- max_seq_length within the model's positions


@pytest.mark.parametrize(
    "model, too_long, limit, reason",
    [
        ("builtin:xlmr-tiny", 257, 256, "max_position_embeddings 258 minus the padding offset 2"),
        ("FacebookAI/xlm-roberta-large", 513, 512, "max_position_embeddings 514 minus the padding offset 2"),
        ("xlm-roberta-base", 1024, 512, "max_position_embeddings 514 minus the padding offset 2"),
    ],
)
def test_max_seq_length_beyond_the_models_positions_is_refused(capsys, model, too_long, limit, reason):
    assert main(["validate", str(DEMO), "--set", f"model.name_or_path={model}", "--set", f"target.training.max_seq_length={limit}"]) == 0
    capsys.readouterr()
    for field in ("intermediate.0.training.max_seq_length", "target.training.max_seq_length"):
        assert main(["validate", str(DEMO), "--set", f"model.name_or_path={model}", "--set", f"{field}={too_long}"]) == 2
        assert _one_error_line(capsys) == (
            f"xit-dist: error: {DEMO}: spec: {field}: {too_long} is more than model {model} takes: {limit} tokens ({reason})"
        )


def test_max_seq_length_of_a_local_bert_directory_has_no_offset(tmp_path, capsys):
    """BERT numbers its positions from 0: all 512 position embeddings are usable. Read from the
    directory's config.json alone (there are no weights in it); plan refuses it too, before Ray."""
    model = tmp_path / "bert"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert", "max_position_embeddings": 512, "pad_token_id": 0}')
    assert load_spec(DEMO, [f"model.name_or_path={model}", "target.training.max_seq_length=512"])
    for command in ("validate", "plan", "run"):
        assert main([command, str(DEMO), "--set", f"model.name_or_path={model}", "--set", "target.training.max_seq_length=513",
                     "--set", f"output_dir={tmp_path / 'out'}"]) == 2
        assert _one_error_line(capsys).endswith(f"513 is more than model {model} takes: 512 tokens (max_position_embeddings 512)")
    assert not (tmp_path / "out").exists()


def test_a_grid_cell_beyond_the_models_positions_is_refused(tmp_path):
    from xit_dist.plan.grid import load_grid

    grid = tmp_path / "grid.yaml"
    grid.write_text(f"# grid\nbase: {DEMO}\naxes: {{target.training.max_seq_length: [128, 300]}}\n")
    with pytest.raises(SpecError, match=r"target.training.max_seq_length: 300 is more than model builtin:xlmr-tiny takes: 256 tokens"):
        load_grid(grid)
