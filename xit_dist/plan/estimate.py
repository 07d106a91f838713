"""Memory estimates per GPU, from a model's config alone (no weights are downloaded): parameter
counts from a model built on the meta device, model-state memory per ZeRO stage at the precision
the filled DeepSpeed config really uses (DeepSpeed's own estimators assume 16-bit gradients; they
are shown beside it), and an activation estimate for the micro batch and sequence length."""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class ModelSize:
    total_params: int
    largest_layer_params: int
    hidden_size: int
    num_layers: int
    num_heads: int


@dataclass(frozen=True)
class MemoryEstimate:
    model_states_bytes: int   # per GPU: parameters, gradients, optimizer states
    activation_bytes: int     # per GPU, for one micro batch
    source: str               # the precision counted, and DeepSpeed's own estimate beside it
    deepspeed_bytes: int = 0  # DeepSpeed's estimator for the same stage (it assumes 16-bit gradients)

    @property
    def total_bytes(self) -> int:
        return self.model_states_bytes + self.activation_bytes


def model_size(config, model_class) -> ModelSize:
    """Counts on the meta device: exact numbers, no memory, no weights."""
    import torch

    with torch.device("meta"):
        model = model_class.from_config(config)
    largest = max(sum(p.numel() for p in module.parameters(recurse=False)) for module in model.modules())
    return ModelSize(
        total_params=sum(p.numel() for p in model.parameters()),
        largest_layer_params=largest,
        hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers,
        num_heads=config.num_attention_heads,
    )


@dataclass(frozen=True)
class Precision:
    """Bytes per element that DeepSpeed 0.19 keeps for a filled config (``fill_auto``'s)."""

    weight_bytes: int      # 2 under bf16, else 4
    grad_bytes: int        # 4 when gradients accumulate in fp32 (fp32 weights, or bf16 with grad_accum_dtype fp32)
    compact_grads: bool    # bf16 + fp32 accumulation: ZeRO-1/2 step on the gradient partition itself, no fp32 copy

    @property
    def name(self) -> str:
        return "fp32" if self.weight_bytes == 4 else f"bf16 weights, {'fp32' if self.grad_bytes == 4 else 'bf16'} gradients"


def precision_of(ds_config: dict, bf16: bool) -> Precision:
    """Read from the config ``fill_auto`` produced (``bf16.enabled``, ``data_types.grad_accum_dtype``)."""
    enabled = ds_config.get("bf16", {}).get("enabled", bf16)
    if enabled not in (True, False):
        enabled = bf16  # "auto" in an unfilled config
    accumulate = str(ds_config.get("data_types", {}).get("grad_accum_dtype", "")).removeprefix("torch.")
    fp32_accumulation = accumulate in ("fp32", "float32", "float")
    if not enabled:
        return Precision(4, 4, False)
    return Precision(2, 4 if fp32_accumulation else 2, fp32_accumulation)


def model_states_bytes(
    size: ModelSize, stage: int, num_gpus: int, offload_optimizer: bool, offload_params: bool, precision: Precision
) -> int:
    """Per GPU at the optimizer step, from DeepSpeed 0.19's code paths: weights (partitioned at
    ZeRO-3), gradients in their accumulation dtype (partitioned from ZeRO-2; at ZeRO-1 too, except
    that bf16 + fp32 accumulation runs DeepSpeed's BF16_Optimizer, which keeps all gradients in
    fp32), the fp32 copy of the gradient partition made at the step (not with the compact fp32
    partition of bf16 + fp32 accumulation at ZeRO-1/2), the fp32 master weights and AdamW's two
    states (partitioned from ZeRO-1), and at ZeRO-3 DeepSpeed's allowance for the largest layer
    gathered. Offloading moves everything but the weights (and with parameters, those too) off
    the GPU. Checked against engines in BENCHMARKS.md ("Plan memory estimate")."""
    P, N, w, g = size.total_params, num_gpus, precision.weight_bytes, precision.grad_bytes
    if stage == 0:  # no partitioning; bf16 keeps an fp32 master copy (16 bytes either way)
        return (w + g + 8 + (4 if w == 2 else 0)) * P
    gathered = 4 * size.largest_layer_params if stage == 3 else 0
    weights = w * P / N if stage == 3 else w * P
    if offload_params and stage == 3:
        return gathered
    if offload_optimizer:
        return int(weights + gathered)
    bf16_optimizer = stage == 1 and precision.compact_grads
    grads = 4 * P if bf16_optimizer else g * P / N
    step_copy = 0 if (precision.compact_grads and stage in (1, 2)) else 4 * P / N
    return int(weights + grads + step_copy + 12 * P / N + gathered)


def deepspeed_estimate(size: ModelSize, stage: int, num_gpus: int, offload_optimizer: bool, offload_params: bool) -> int:
    """DeepSpeed's own estimators, for comparison: they assume 16-bit weights and 16-bit gradients
    copied to fp32 at the step (ZeRO-1 uses the ZeRO-2 estimator; stage 0: 16 bytes/parameter)."""
    if stage == 0:
        return 16 * size.total_params
    if stage in (1, 2):
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        return int(estimate_zero2_model_states_mem_needs(size.total_params, num_gpus_per_node=num_gpus, cpu_offload=offload_optimizer)[1])
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    _, gpu, _ = estimate_zero3_model_states_mem_needs(
        size.total_params, size.largest_layer_params, num_gpus_per_node=num_gpus,
        cpu_offload=offload_optimizer, cpu_offload_params=offload_params, zero_init=True,
    )
    return int(gpu)


def activation_bytes(size: ModelSize, micro_batch: int, seq_len: int, bf16: bool) -> int:
    """Stored activations of a transformer encoder without recomputation: per layer
    s·b·h·(34 + 5·a·s/h) bytes with 16-bit activations (Korthikanti et al. 2022, "Reducing
    Activation Recomputation in Large Transformer Models", eq. 1); fp32 doubles it."""
    s, b, h, a = seq_len, micro_batch, size.hidden_size, size.num_heads
    per_layer = s * b * h * (34 + 5 * a * s / h)
    return int(size.num_layers * per_layer * (1 if bf16 else 2))


def estimate(size: ModelSize, ds_config: dict, num_gpus: int, micro_batch: int, seq_len: int, bf16: bool) -> MemoryEstimate:
    """``ds_config`` as ``fill_auto`` filled it: its precision decides the bytes counted."""
    zero = ds_config.get("zero_optimization", {})
    stage = int(zero.get("stage", 0))
    offload = (zero.get("offload_optimizer", {}).get("device") == "cpu", zero.get("offload_param", {}).get("device") == "cpu")
    precision = precision_of(ds_config, bf16)
    states = model_states_bytes(size, stage, num_gpus, *offload, precision)
    theirs = deepspeed_estimate(size, stage, num_gpus, *offload)
    source = f"{precision.name}; DeepSpeed's estimator: {format_bytes(theirs)}"
    return MemoryEstimate(states, activation_bytes(size, micro_batch, seq_len, bf16), source, theirs)


def format_bytes(count: float) -> str:
    return f"{count / GIB:.2f} GiB" if count >= GIB else f"{count / 1024**2:.1f} MiB"


def parse_memory(text: str) -> int:
    """'80GiB', '80GB', '81920MiB' -> bytes."""
    units = {"gib": GIB, "gb": 10**9, "mib": 1024**2, "mb": 10**6, "tib": 1024**4, "tb": 10**12}
    lowered = text.strip().lower()
    for unit, factor in sorted(units.items(), key=lambda item: -len(item[0])):
        if lowered.endswith(unit):
            number = lowered[: -len(unit)].strip()
            try:
                value = float(number)
            except ValueError:
                break
            if value > 0:
                return int(value * factor)
    from xit_dist.errors import XitError

    raise XitError(f"--gpu-memory {text!r}: expected a size such as 80GiB, 40GB or 24576MiB")
