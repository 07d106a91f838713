"""Checkpoints are verified before they are loaded, damaged ones are passed over for the newest
intact one, non-finite weights are never consolidated, and a time-based checkpoint saves the
progress of a long epoch. The unit tests use real DeepSpeed checkpoint directories of the tiny
model written by a one-process engine; one end-to-end run damages a real run's newest checkpoint."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import torch

from tests.conftest import small_spec_tree
from xit_dist.train.checkpoint_manifest import MANIFEST_PREFIX, find_damage, newest_intact

OPTIMIZER_FILE = "ds/zero_pp_rank_0_mp_rank_00_optim_states.pt"
MODEL_FILE = "ds/mp_rank_00_model_states.pt"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_engine(monkeypatch_module):
    """A one-process ZeRO-2 DeepSpeed engine on the built-in tiny XLM-R with an XNLI head."""
    import deepspeed

    from xit_dist.builtin.assets import resolve_model_dir
    from xit_dist.tasks.registry import get_task
    from xit_dist.tasks.formats import get_format
    from xit_dist.config.ds_config import fill_auto, load_ds_config

    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch_module.setenv(key, value)
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    model_dir = resolve_model_dir("builtin:xlmr-tiny")
    task = get_task("xnli")
    fmt = get_format(task.format)
    torch.manual_seed(0)
    model = fmt.model_class().from_pretrained(model_dir, **fmt.label_config(task))
    config = fill_auto(
        load_ds_config("zero2"), micro_batch_size=2, gradient_accumulation_steps=1, world_size=1,
        learning_rate=1e-3, weight_decay=0.0, adam_epsilon=1e-8, max_grad_norm=1.0, bf16=False, hidden_size=model.config.hidden_size,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    engine, _, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=config, dist_init_required=False)
    batch = {"input_ids": torch.tensor([[0, 5, 6, 2], [0, 7, 8, 2]]), "labels": torch.tensor([0, 1])}
    engine.backward(engine(**batch).loss)
    engine.step()  # optimizer states exist
    yield engine, model_dir
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _progress(step: int) -> dict:
    return {"global_step": step, "losses": [], "engine_dtype": "float32", "final_engine_fingerprint": "unused"}


@pytest.fixture(scope="module")
def written(tiny_engine, tmp_path_factory) -> Path:
    from xit_dist.train.checkpoint import write_checkpoint

    engine, _ = tiny_engine
    directory = tmp_path_factory.mktemp("ckpt") / "step-00000010"
    directory.mkdir()
    write_checkpoint(engine, directory, _progress(10), rank=0)
    return directory


def _copy(written: Path, parent: Path, name: str) -> Path:
    return Path(shutil.copytree(written, parent / name))


def test_manifest_lists_every_file_of_the_checkpoint(written):
    manifest = json.loads((written / f"{MANIFEST_PREFIX}0.json").read_text())
    on_disk = {p.relative_to(written).as_posix() for p in written.rglob("*") if p.is_file() and not p.name.startswith(MANIFEST_PREFIX)}
    assert set(manifest["files"]) == on_disk
    assert {MODEL_FILE, OPTIMIZER_FILE, "rng_rank0.pt", "progress.json"} <= on_disk
    assert manifest["world_size"] == 1
    assert find_damage(written) is None


def test_truncated_file_is_named_with_its_sizes(written, tmp_path):
    damaged = _copy(written, tmp_path, "step-00000020")
    size = (damaged / MODEL_FILE).stat().st_size
    with (damaged / MODEL_FILE).open("r+b") as handle:
        handle.truncate(size // 2)
    assert find_damage(damaged) == f"{MODEL_FILE}: {size // 2} bytes, {size} when written"


def test_sixteen_overwritten_bytes_of_optimizer_state_are_caught(written, tmp_path):
    damaged = _copy(written, tmp_path, "step-00000020")
    path = damaged / OPTIMIZER_FILE
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))  # same size: only the content hash can tell
    assert find_damage(damaged) == f"{OPTIMIZER_FILE}: content differs from its SHA-256 in {MANIFEST_PREFIX}0.json"


def test_a_missing_rank_manifest_is_damage(written, tmp_path):
    damaged = _copy(written, tmp_path, "step-00000020")
    manifest = damaged / f"{MANIFEST_PREFIX}0.json"
    content = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**content, "world_size": 2}))
    assert find_damage(damaged) == f"{MANIFEST_PREFIX}1.json: missing (2 ranks wrote this checkpoint)"


def test_resume_passes_over_damaged_checkpoints_to_the_newest_intact_one(written, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    older, intact = _copy(written, run, "step-00000005"), _copy(written, run, "step-00000010")
    latest = _copy(written, run, "step-00000020")
    (latest / "rng_rank0.pt").unlink()
    unregistered = _copy(written, run, "step-00000030")  # newer than Ray's latest: an upload Ray never registered
    (unregistered / MODEL_FILE).write_bytes(b"")
    chosen, damaged = newest_intact(latest)
    assert chosen == intact and older.is_dir()
    assert damaged == [(latest, "rng_rank0.pt: missing")]
    (intact / MODEL_FILE).write_bytes(b"")
    (older / OPTIMIZER_FILE).write_bytes(b"")
    chosen, damaged = newest_intact(latest)
    assert chosen is None and [path.name for path, _ in damaged] == ["step-00000020", "step-00000010", "step-00000005"]


def test_after_a_fallback_checkpoints_are_named_apart_and_ordered_newest_first(tmp_path):
    """The damaged checkpoints stay in Ray's list, and Ray deletes an evicted one by its path:
    the attempt that fell back must not write into a directory of the same name."""
    from xit_dist.train.checkpoint_manifest import candidates
    from xit_dist.train.checkpoint import checkpoint_name

    assert checkpoint_name({"global_step": 20}) == "step-00000020"
    progress = {"global_step": 20, "checkpoint_fallbacks": [{"suffix": "-r1700000000"}]}
    assert checkpoint_name(progress) == "step-00000020-r1700000000"
    names = ["step-00000010", "step-00000020", "step-00000020-r1700000000", "step-00000030-r1700000000", "best"]
    for name in names:
        (tmp_path / name).mkdir()
    order = [path.name for path in candidates(tmp_path / "step-00000030-r1700000000")]
    assert order == ["step-00000030-r1700000000", "step-00000020-r1700000000", "step-00000020", "step-00000010"]


def test_non_finite_weight_is_refused_at_consolidation(tiny_engine, tmp_path):
    from xit_dist.train.consolidate import ConsolidationError, consolidate
    from xit_dist.train.checkpoint import write_checkpoint

    engine, model_dir = tiny_engine
    names = {id(param): name for name, param in engine.module.named_parameters()}
    first = engine.optimizer.bit16_groups[0][0]  # the start of ZeRO-2's fp32 master partition
    master = engine.optimizer.single_partition_of_fp32_groups[0]
    saved = master[0].item()
    with torch.no_grad():
        master[0] = float("-inf")
    try:
        directory = tmp_path / "step-00000020"
        directory.mkdir()
        write_checkpoint(engine, directory, _progress(20), rank=0)
    finally:
        with torch.no_grad():
            master[0] = saved
    with pytest.raises(ConsolidationError, match=rf"step-00000020: parameter {names[id(first)]} holds 1 non-finite value\(s\) \(first -inf\)"):
        consolidate(directory, model_dir, model_dir, "xnli", "model", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_damaged_final_checkpoint_is_refused_at_consolidation(written, tiny_engine, tmp_path):
    from xit_dist.train.consolidate import ConsolidationError, consolidate

    _, model_dir = tiny_engine
    damaged = _copy(written, tmp_path, "step-00000020")
    (damaged / OPTIMIZER_FILE).write_bytes(b"x")
    with pytest.raises(ConsolidationError, match=f"damaged checkpoint file {damaged}/{OPTIMIZER_FILE}: 1 bytes"):
        consolidate(damaged, model_dir, model_dir, "xnli", "model", tmp_path / "out")


def test_best_dev_weights_are_verified_before_they_are_restored(tiny_engine, tmp_path, capsys):
    """``best/`` (model selection on English dev) carries a manifest too: damaged, the last
    step's weights are kept with one warning line naming the file, instead of loading it."""
    from xit_dist.train.validation import DevValidator

    engine, _ = tiny_engine
    validator = DevValidator.__new__(DevValidator)  # the parts save/restore use, without a dev set
    validator.engine, validator.rank, validator.phase_id = engine, 0, "xnli-test"
    validator.best_dir, validator.bucket = tmp_path / "best", None
    validator.progress = {"best_step": 10, "global_step": 10}
    validator._save_best()
    assert find_damage(validator.best_dir) is None and (validator.best_dir / f"{MANIFEST_PREFIX}0.json").is_file()
    validator.progress["global_step"] = 20
    validator.restore_best()
    assert validator.progress["restored_best_step"] == 10 and "best_damaged" not in validator.progress

    size = (validator.best_dir / OPTIMIZER_FILE).stat().st_size
    (validator.best_dir / OPTIMIZER_FILE).write_bytes(b"x")
    del validator.progress["restored_best_step"]
    validator.restore_best()
    assert validator.progress["best_damaged"] == f"{OPTIMIZER_FILE}: 1 bytes, {size} when written"
    assert "restored_best_step" not in validator.progress
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"[xnli-test] warning: {validator.best_dir}/{OPTIMIZER_FILE}: 1 bytes") and "keeping the last step's (20)" in line


def test_best_dev_weights_in_a_bucket_are_restored_on_another_node(tiny_engine, tmp_path, monkeypatch, capsys):
    """output_dir in a bucket (a real S3 server): the best weights go to ``best-<step>/`` with a
    manifest, ``best.json`` names them and the earlier ones go; a node that never saw them (an
    empty cache) downloads and restores them; damaged in the bucket, they are refused as on disk."""
    import boto3

    from tests.s3_server import seaweedfs_in_aws_environment
    from xit_dist.train.validation import DevValidator

    engine, _ = tiny_engine
    bucket, phase = "xit-best-tests", "out/phases/xnli-test"
    with seaweedfs_in_aws_environment(bucket):
        s3 = boto3.session.Session().client("s3")  # a fresh session: each test server has its own keys
        monkeypatch.setenv("XIT_DIST_CACHE", str(tmp_path / "node-a"))
        validator = DevValidator.__new__(DevValidator)  # the parts save/restore use, without a dev set
        validator.engine, validator.rank, validator.phase_id = engine, 0, "xnli-test"
        validator.best_dir, validator.bucket = None, f"s3://{bucket}/{phase}"
        validator.progress = {"best_step": 10, "global_step": 10}
        validator._save_best()
        validator.progress.update(best_step=20, global_step=20)
        validator._save_best()
        keys = [entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket, Prefix=phase)["Contents"]]
        assert f"{phase}/best-00000020/{OPTIMIZER_FILE}" in keys and f"{phase}/best-00000020/{MANIFEST_PREFIX}0.json" in keys
        assert not any("best-00000010" in key for key in keys)  # replaced
        assert json.loads(s3.get_object(Bucket=bucket, Key=f"{phase}/best.json")["Body"].read()) == {"dir": "best-00000020", "step": 20}

        monkeypatch.setenv("XIT_DIST_CACHE", str(tmp_path / "node-b"))  # another node: nothing of it on disk
        validator.progress["global_step"] = 30
        validator.restore_best()
        assert validator.progress["restored_best_step"] == 20 and "best_damaged" not in validator.progress
        copy = tmp_path / "node-b" / "outputs" / "s3" / bucket / phase / "best-00000020"
        assert find_damage(copy) is None and (copy / OPTIMIZER_FILE).is_file()

        s3.put_object(Bucket=bucket, Key=f"{phase}/best-00000020/{OPTIMIZER_FILE}", Body=b"x")
        monkeypatch.setenv("XIT_DIST_CACHE", str(tmp_path / "node-c"))
        del validator.progress["restored_best_step"]
        validator.restore_best()
        assert validator.progress["best_damaged"].startswith(f"{OPTIMIZER_FILE}: 1 bytes, ")
        assert "restored_best_step" not in validator.progress
        assert "keeping the last step's (30)" in capsys.readouterr().out


def test_checkpoint_every_minutes_is_not_part_of_the_phase_hash(tmp_path):
    from xit_dist.plan.phases import build_plan
    from xit_dist.config.load import validate_tree

    tree = small_spec_tree(tmp_path)
    default = [phase.hash for phase in build_plan(validate_tree(tree))]
    for stage in [*tree["intermediate"], tree["target"]]:
        stage["training"]["checkpoint_every_minutes"] = 0.5
    assert [phase.hash for phase in build_plan(validate_tree(tree))] == default
    assert validate_tree(small_spec_tree(tmp_path)).target.training.checkpoint_every_minutes == 30


@pytest.mark.ray
def test_damaged_newest_checkpoint_of_a_run_falls_back_to_the_previous_one(ray_cluster, tmp_path):
    """A run with a time-based checkpoint every 0.06 s (at each log step, mid-epoch) whose driver
    died after training, before consolidating; then a file of its newest checkpoint is truncated.
    The rerun says so, resumes from the previous checkpoint and ends exactly where the first did."""
    from xit_dist.config.layout import phase_dir
    from xit_dist.plan.phases import build_plan
    from xit_dist.run.scheduler import run_experiment
    from xit_dist.config.load import validate_tree
    from xit_dist.train.phase import DONE_FILE

    tree = small_spec_tree(tmp_path, intermediate=(), deepspeed="zero2", name="ckpt")
    tree["target"]["training"].update(max_steps=40, checkpoint_every_minutes=0.001)
    tree["evaluation"].update(languages=["en"], max_examples_per_language=64)
    spec = validate_tree(tree)
    first = run_experiment(spec)
    record = first.phases[0].record
    run_dir = tmp_path / "ray" / record["phase_id"]
    # Ray keeps two: the time-based one at step 30 (an epoch of the demo MNLI is longer) and the final one.
    assert sorted(path.name for path in run_dir.glob("step-*")) == ["step-00000030", "step-00000040"]
    assert json.loads((run_dir / "step-00000030" / "progress.json").read_text())["global_step"] == 30

    (phase_dir(spec, build_plan(spec)[0]) / DONE_FILE).unlink()  # the driver died before consolidating
    truncated = run_dir / "step-00000040" / MODEL_FILE
    size = truncated.stat().st_size
    with truncated.open("r+b") as handle:
        handle.truncate(100)
    second = run_experiment(spec)
    again = second.phases[0].record
    (fallback,) = again["checkpoint_fallbacks"]
    assert fallback["damaged"] == {"step-00000040": f"{MODEL_FILE}: 100 bytes, {size} when written"}
    assert fallback["resumed_from"] == "step-00000030" and again["resumed_from_steps"] == [30]
    assert again["losses"] == record["losses"]
    assert again["final_engine_fingerprint"] == record["final_engine_fingerprint"]
    assert second.results.per_language == first.results.per_language
    assert Path(again["checkpoint"]).name == f"step-00000040{fallback['suffix']}"
