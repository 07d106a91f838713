"""``xit-dist plan``: phases and their state, and per-GPU memory from DeepSpeed's estimators
for XLM-R Large built from its config alone (no weights)."""

from __future__ import annotations

import json

import pytest

from xit_dist.cli import main
from xit_dist.estimate import GIB, activation_bytes, estimate, model_size, parse_memory
from xit_dist.errors import XitError

# XLM-R Large's published config (FacebookAI/xlm-roberta-large config.json).
XLMR_LARGE = {
    "architectures": ["XLMRobertaForMaskedLM"], "model_type": "xlm-roberta", "vocab_size": 250002,
    "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096,
    "max_position_embeddings": 514, "type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1,
    "bos_token_id": 0, "eos_token_id": 2,
}


@pytest.fixture()
def xlmr_large_size(tmp_path):
    from transformers import AutoModelForSequenceClassification, XLMRobertaConfig

    return model_size(XLMRobertaConfig(**XLMR_LARGE, num_labels=3), AutoModelForSequenceClassification)


def test_xlmr_large_parameter_count_from_config(xlmr_large_size):
    # 558.8M in the encoder without its pooler (embeddings 250002 x 1024 dominate) + a 1024x1024 + 1024x3 head.
    assert 559e6 < xlmr_large_size.total_params < 561e6
    assert xlmr_large_size.largest_layer_params == 250002 * 1024  # the word embeddings


@pytest.mark.parametrize("stage, config", [(2, {"zero_optimization": {"stage": 2}}), (3, {"zero_optimization": {"stage": 3}})])
def test_model_states_are_deepspeeds_own_figures(xlmr_large_size, stage, config):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    P, N = xlmr_large_size.total_params, 8
    ours = estimate(xlmr_large_size, config, N, micro_batch=4, seq_len=256, bf16=True)
    if stage == 2:
        expected = estimate_zero2_model_states_mem_needs(P, num_gpus_per_node=N, cpu_offload=False)[1]
        assert expected == 2 * P + int(18 * P / N)  # DeepSpeed's formula, written out
    else:
        expected = estimate_zero3_model_states_mem_needs(
            P, xlmr_large_size.largest_layer_params, num_gpus_per_node=N, cpu_offload=False, cpu_offload_params=False
        )[1]
    assert ours.model_states_bytes == int(expected)


def test_every_shipped_config_matches_deepspeeds_estimators_at_any_scale(xlmr_large_size):
    """Each file in ds_configs/ at 1 to 64 GPUs: the plan's model-state figure is the one
    DeepSpeed's own estimator gives for that stage and offload setting (read from the file)."""
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    from xit_dist.train.ds_config import load_ds_config, resolve_ds_config

    P, largest = xlmr_large_size.total_params, xlmr_large_size.largest_layer_params
    # file -> (estimator, offload optimizer, offload parameters); ZeRO-1 has no estimator of its own
    shipped = {"zero1": (2, False, False), "zero2": (2, False, False), "zero3": (3, False, False), "zero3_offload": (3, True, True)}
    for name, (estimator, offload_optimizer, offload_params) in shipped.items():
        config = load_ds_config(resolve_ds_config(name))
        for gpus in (1, 2, 8, 64):
            if estimator == 2:
                expected = estimate_zero2_model_states_mem_needs(P, num_gpus_per_node=gpus, cpu_offload=offload_optimizer)[1]
            else:
                expected = estimate_zero3_model_states_mem_needs(
                    P, largest, num_gpus_per_node=gpus, cpu_offload=offload_optimizer, cpu_offload_params=offload_params, zero_init=True
                )[1]
            ours = estimate(xlmr_large_size, config, gpus, micro_batch=4, seq_len=256, bf16=True)
            assert ours.model_states_bytes == int(expected), (name, gpus)
    # offloading parameters leaves only the largest layer on the GPU: 4 bytes x 256M embedding rows
    offloaded = estimate(xlmr_large_size, load_ds_config(resolve_ds_config("zero3_offload")), 8, 4, 256, True)
    assert offloaded.model_states_bytes == 4 * largest


def test_activation_formula_by_hand(xlmr_large_size):
    # 24 layers x s*b*h*(34 + 5*a*s/h) with s=256, b=4, h=1024, a=16: 34 + 5*16*256/1024 = 54
    assert activation_bytes(xlmr_large_size, 4, 256, bf16=True) == 24 * 256 * 4 * 1024 * 54
    assert activation_bytes(xlmr_large_size, 4, 256, bf16=False) == 2 * 24 * 256 * 4 * 1024 * 54


def test_parse_memory():
    assert parse_memory("80GiB") == 80 * GIB and parse_memory("40 GB") == 40 * 10**9
    with pytest.raises(XitError, match="--gpu-memory 'lots'"):
        parse_memory("lots")


def test_plan_command_warns_when_it_does_not_fit(tmp_path, capsys):
    model = tmp_path / "xlmr-large-config"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(XLMR_LARGE))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"name: big\noutput_dir: {tmp_path / 'out'}\nmodel: {{name_or_path: {model}}}\n"
        "intermediate: [{task: mnli}]\ntarget: {task: xnli}\n"
        "distributed: {num_workers: 1, use_gpu: true, deepspeed_config: zero0}\n"
    )
    assert main(["plan", str(spec), "--gpu-memory", "16GiB"]) == 0
    out = capsys.readouterr().out
    assert "phase 1 intermediate mnli" in out and "phase 2 target xnli" in out and out.count(": to train") == 2
    # ZeRO-0 on one GPU: 16 bytes x 559.9M parameters = 8.34 GiB of model states; activations of a
    # micro batch of 32 x 256 tokens in fp32: 2 x 24 x 256 x 32 x 1024 x 54 bytes = 20.25 GiB.
    assert "model states 8.34 GiB (16 bytes/parameter (no partitioning)), activations 20.25 GiB, total 28.59 GiB" in out
    assert "warning: phase 1 (mnli) needs about" in out and "more than 16.00 GiB" in out
    assert main(["plan", str(spec), "--gpu-memory", "80GiB"]) == 0
    assert "warning" not in capsys.readouterr().out
