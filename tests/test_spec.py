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
from xit_dist.spec import apply_override, load_spec

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "ray_configs" / "demo.yaml"


def test_every_shipped_spec_validates():
    for path in sorted([*(REPO / "ray_configs").glob("*.yaml"), *(REPO / "ray_configs" / "demos").glob("*.yaml")]):
        load_spec(path)


def test_the_format_demos_cover_every_trainable_format_and_retrieval():
    from xit_dist.tasks import get_task

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
    assert last == f"xit-dist: error: {empty}/nyu-mll/glue/mnli/train.jsonl: not found (local copy of nyu-mll/glue[mnli] split train)"
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
        yaml.safe_load(path.read_text())


def test_override_inside_a_scalar_is_one_line():
    with pytest.raises(SpecError, match=r"^--set name: not a mapping"):
        load_spec(DEMO, ["name.x=1"])
