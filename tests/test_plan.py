"""``xit-dist plan``: phases and their state, and per-GPU memory from DeepSpeed's estimators
for XLM-R Large built from its config alone (no weights)."""

from __future__ import annotations

import json

import pytest

from xit_dist.cli import main
from xit_dist.plan.estimate import GIB, activation_bytes, estimate, model_size, parse_memory
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


def _filled(name: str, bf16: bool, hidden: int = 1024) -> dict:
    """A shipped ds_config as the worker fills it."""
    from xit_dist.config.ds_config import fill_auto, load_ds_config

    return fill_auto(
        load_ds_config(name), micro_batch_size=4, gradient_accumulation_steps=1, world_size=8,
        learning_rate=1e-5, weight_decay=0.0, adam_epsilon=1e-8, max_grad_norm=1.0, bf16=bf16, hidden_size=hidden,
    )


def test_model_states_count_the_precision_fill_auto_sets(xlmr_large_size):
    """bf16 at ZeRO-2, as fill_auto fills it (gradients accumulated in fp32 in DeepSpeed's compact
    partition, stepped on in place): 2 bytes of bf16 weights per parameter, and per rank 4 of fp32
    gradients + 4 of fp32 master weights + 8 of AdamW states. DeepSpeed's estimator assumes bf16
    gradients copied to fp32 at the step, 2 + 4 bytes: 2 bytes per parameter and rank more."""
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    P, N = xlmr_large_size.total_params, 8
    ours = estimate(xlmr_large_size, _filled("zero2", bf16=True), N, micro_batch=4, seq_len=256, bf16=True)
    assert ours.model_states_bytes == int(2 * P + 16 * P / N)
    assert ours.deepspeed_bytes == estimate_zero2_model_states_mem_needs(P, num_gpus_per_node=N, cpu_offload=False)[1] == 2 * P + int(18 * P / N)
    assert "bf16 weights, fp32 gradients" in ours.source
    # fp32 (the default): 4-byte weights whole, fp32 gradients copied flat for the step
    fp32 = estimate(xlmr_large_size, _filled("zero2", bf16=False), N, micro_batch=4, seq_len=256, bf16=False)
    assert fp32.model_states_bytes == int(4 * P + (4 + 4 + 12) * P / N)
    # bf16 at ZeRO-1: DeepSpeed's BF16_Optimizer keeps every gradient in fp32 (not only this rank's share)
    zero1 = estimate(xlmr_large_size, _filled("zero1", bf16=True), N, micro_batch=4, seq_len=256, bf16=True)
    assert zero1.model_states_bytes == int(2 * P + 4 * P + 12 * P / N)


def test_with_deepspeeds_assumed_precision_the_figures_are_its_estimators(xlmr_large_size):
    """With bf16 gradients (the estimators' assumption: grad_accum_dtype bf16), each shipped config
    at 1 to 64 GPUs gives DeepSpeed's own figure at ZeRO-1/2 and with everything offloaded; at
    ZeRO-3 the flat fp32 gradient copy of the step (2 bytes/parameter/rank over 16-bit gradients)
    is counted, which the ZeRO-3 estimator leaves out."""
    P, largest = xlmr_large_size.total_params, xlmr_large_size.largest_layer_params
    for name in ("zero1", "zero2", "zero3", "zero3_offload"):
        config = _filled(name, bf16=True)
        config["data_types"] = {"grad_accum_dtype": "bf16"}
        for gpus in (1, 2, 8, 64):
            ours = estimate(xlmr_large_size, config, gpus, micro_batch=4, seq_len=256, bf16=True)
            extra = int(2 * P / gpus) if name == "zero3" else 0
            assert abs(ours.model_states_bytes - ours.deepspeed_bytes - extra) <= 1, (name, gpus)
    # offloading parameters leaves only the largest layer on the GPU: 4 bytes x 256M embedding rows
    offloaded = estimate(xlmr_large_size, _filled("zero3_offload", bf16=True), 8, 4, 256, True)
    assert offloaded.model_states_bytes == 4 * largest


def test_plan_estimates_xlmr_large_offline_from_its_shipped_config(tmp_path, capsys, monkeypatch):
    """No hub access (HF_HUB_OFFLINE=1, and no cached copy): the shipped config.json of
    FacebookAI/xlm-roberta-large gives the per-GPU estimates (it printed no estimates before)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-home"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"name: big\noutput_dir: {tmp_path / 'out'}\nmodel: {{name_or_path: FacebookAI/xlm-roberta-large}}\n"
        "intermediate: [{task: mnli}]\ntarget: {task: xnli}\n"
        "distributed: {num_workers: 8, use_gpu: true, deepspeed_config: zero2, bf16: true}\n"
    )
    assert main(["plan", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "model FacebookAI/xlm-roberta-large: 559.9M parameters (largest layer 256.0M), 24 layers x 1024" in out
    # 2 x 559.9M + 16 x 559.9M / 8 bytes = 2.09 GiB; DeepSpeed's estimator 2 + 18/8 bytes/parameter = 2.22 GiB
    assert out.count("per GPU: model states 2.09 GiB (bf16 weights, fp32 gradients; DeepSpeed's estimator: 2.22 GiB)") == 2


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
    assert "model states 8.34 GiB (fp32; DeepSpeed's estimator: 8.34 GiB), activations 20.25 GiB, total 28.59 GiB" in out
    assert "warning: phase 1 (mnli) needs about" in out and "more than 16.00 GiB" in out
    assert main(["plan", str(spec), "--gpu-memory", "80GiB"]) == 0
    assert "warning" not in capsys.readouterr().out
