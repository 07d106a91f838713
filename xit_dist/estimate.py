"""Memory estimates per GPU, from a model's config alone (no weights are downloaded): parameter
counts from a model built on the meta device, model-state memory from DeepSpeed's own ZeRO
estimators, and an activation estimate for the micro batch and sequence length."""

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
    source: str               # which estimator gave the model-state figure

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


def model_states_bytes(size: ModelSize, stage: int, num_gpus: int, offload_optimizer: bool, offload_params: bool) -> tuple[int, str]:
    """DeepSpeed's estimators (they assume 16-bit weights with fp32 Adam states). ZeRO-1 uses
    the ZeRO-2 estimator, as DeepSpeed has none of its own; stage 0 keeps everything on every
    GPU: 2 (weights) + 2 (gradients) + 12 (fp32 master, momentum, variance) bytes per parameter."""
    if stage == 0:
        return 16 * size.total_params, "16 bytes/parameter (no partitioning)"
    if stage in (1, 2):
        from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

        _, gpu = estimate_zero2_model_states_mem_needs(size.total_params, num_gpus_per_node=num_gpus, cpu_offload=offload_optimizer)
        return int(gpu), "deepspeed estimate_zero2_model_states_mem_needs"
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs

    _, gpu, _ = estimate_zero3_model_states_mem_needs(
        size.total_params,
        size.largest_layer_params,
        num_gpus_per_node=num_gpus,
        cpu_offload=offload_optimizer,
        cpu_offload_params=offload_params,
        zero_init=True,
    )
    return int(gpu), "deepspeed estimate_zero3_model_states_mem_needs"


def activation_bytes(size: ModelSize, micro_batch: int, seq_len: int, bf16: bool) -> int:
    """Stored activations of a transformer encoder without recomputation: per layer
    s·b·h·(34 + 5·a·s/h) bytes with 16-bit activations (Korthikanti et al. 2022, "Reducing
    Activation Recomputation in Large Transformer Models", eq. 1); fp32 doubles it."""
    s, b, h, a = seq_len, micro_batch, size.hidden_size, size.num_heads
    per_layer = s * b * h * (34 + 5 * a * s / h)
    return int(size.num_layers * per_layer * (1 if bf16 else 2))


def estimate(size: ModelSize, ds_config: dict, num_gpus: int, micro_batch: int, seq_len: int, bf16: bool) -> MemoryEstimate:
    zero = ds_config.get("zero_optimization", {})
    states, source = model_states_bytes(
        size,
        int(zero.get("stage", 0)),
        num_gpus,
        offload_optimizer=zero.get("offload_optimizer", {}).get("device") == "cpu",
        offload_params=zero.get("offload_param", {}).get("device") == "cpu",
    )
    return MemoryEstimate(states, activation_bytes(size, micro_batch, seq_len, bf16), source)


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
