"""Filling the shipped DeepSpeed configs: bf16 at ZeRO 1-3 accumulates and reduces gradients in
fp32. That real engines built from the filled config keep exactly their share of fp32 gradients
is measured by benchmarks/zero_memory.py (bf16 rows, BENCHMARKS.md section 2), not here: a
DeepSpeed engine in a subprocess costs ~50 s of the suite."""

from __future__ import annotations

import pytest

from xit_dist.config.batch import split_batch
from xit_dist.config.spec import TrainingConfig
from xit_dist.errors import SpecError
from xit_dist.config.ds_config import PACKAGED_DS_CONFIGS, fill_auto, load_ds_config

FILL = dict(micro_batch_size=4, gradient_accumulation_steps=1, world_size=1, learning_rate=1e-5, weight_decay=0.01,
            adam_epsilon=1e-8, max_grad_norm=1.0, hidden_size=64)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_bf16_gradients_accumulate_in_fp32_at_zero_1_to_3(stage):
    config = load_ds_config(f"zero{stage}")
    bf16 = fill_auto(config, bf16=True, **FILL)
    fp32 = fill_auto(config, bf16=False, **FILL)
    assert "data_types" not in fp32
    if stage == 0:  # DeepSpeed refuses bf16 weights with fp32 gradients without ZeRO
        assert "data_types" not in bf16
    else:
        assert bf16["data_types"] == {"grad_accum_dtype": "fp32"}
    user = fill_auto({**config, "data_types": {"grad_accum_dtype": "bf16"}}, bf16=True, **FILL)
    assert user["data_types"] == {"grad_accum_dtype": "bf16"}  # a user's choice is kept


def test_a_name_is_looked_up_in_the_working_directory_first_then_the_shipped_copies(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_ds_config("zero2") == load_ds_config(PACKAGED_DS_CONFIGS / "zero2.json")  # no ./ds_configs/ here
    (tmp_path / "ds_configs").mkdir()
    (tmp_path / "ds_configs" / "zero2.json").write_text('{"zero_optimization": {"stage": 1}}  // mine')
    assert load_ds_config("zero2") == {"zero_optimization": {"stage": 1}}
    assert load_ds_config(str(tmp_path / "ds_configs" / "zero2.json")) == {"zero_optimization": {"stage": 1}}
    with pytest.raises(SpecError, match=r"unknown deepspeed config 'zero9'; known: zero0, zero1, zero2, zero3, zero3_offload \(or a path\)"):
        load_ds_config("zero9")
    with pytest.raises(SpecError, match="deepspeed config file not found: missing.json"):
        load_ds_config("missing.json")


def test_the_micro_batch_rule():
    default = split_batch(TrainingConfig(batch_size=32), 4)  # micro batch = batch / workers, no accumulation
    assert (default.micro_batch_size, default.accumulation_steps, default.global_batch) == (8, 1, 32)
    accumulated = split_batch(TrainingConfig(batch_size=32, micro_batch_size=2), 4)
    assert (accumulated.micro_batch_size, accumulated.accumulation_steps, accumulated.global_batch) == (2, 4, 32)
    with pytest.raises(ValueError, match=r"^30 is not a multiple of micro_batch_size x num_workers \(4 x 4\)$"):
        split_batch(TrainingConfig(batch_size=30, micro_batch_size=4), 4)
    with pytest.raises(ValueError, match=r"\(0 x 4\)"):
        split_batch(TrainingConfig(batch_size=2), 4)  # a batch smaller than the workers
