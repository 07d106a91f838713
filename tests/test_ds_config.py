"""Filling the shipped DeepSpeed configs: bf16 at ZeRO 1-3 accumulates and reduces gradients in
fp32. That real engines built from the filled config keep exactly their share of fp32 gradients
is measured by benchmarks/zero_memory.py (bf16 rows, BENCHMARKS.md section 2), not here: a
DeepSpeed engine in a subprocess costs ~50 s of the suite."""

from __future__ import annotations

import pytest

from xit_dist.train.ds_config import fill_auto, load_ds_config, resolve_ds_config

FILL = dict(micro_batch_size=4, gradient_accumulation_steps=1, world_size=1, learning_rate=1e-5, weight_decay=0.01,
            adam_epsilon=1e-8, max_grad_norm=1.0, hidden_size=64)


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_bf16_gradients_accumulate_in_fp32_at_zero_1_to_3(stage):
    config = load_ds_config(resolve_ds_config(f"zero{stage}"))
    bf16 = fill_auto(config, bf16=True, **FILL)
    fp32 = fill_auto(config, bf16=False, **FILL)
    assert "data_types" not in fp32
    if stage == 0:  # DeepSpeed refuses bf16 weights with fp32 gradients without ZeRO
        assert "data_types" not in bf16
    else:
        assert bf16["data_types"] == {"grad_accum_dtype": "fp32"}
    user = fill_auto({**config, "data_types": {"grad_accum_dtype": "bf16"}}, bf16=True, **FILL)
    assert user["data_types"] == {"grad_accum_dtype": "bf16"}  # a user's choice is kept
