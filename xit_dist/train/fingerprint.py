"""Exact content hashes of model weights, to prove that what one phase saved is what the
next phase (or the evaluation) loaded, and that consolidation reproduced the engine's weights."""

from __future__ import annotations

import hashlib
from typing import Iterable, Mapping

import torch


def tensors_fingerprint(named: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype | None = None) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(named, key=lambda item: item[0]):
        value = tensor.detach().to("cpu")
        if dtype is not None:
            value = value.to(dtype)
        digest.update(name.encode())
        digest.update(value.contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def state_dict_fingerprint(state: Mapping[str, torch.Tensor], names: Iterable[str], dtype: torch.dtype | None = None) -> str:
    return tensors_fingerprint(((n, state[n]) for n in names), dtype)


def module_fingerprint(module: torch.nn.Module) -> tuple[str, list[str], torch.dtype]:
    """Fingerprint of a module's full parameters, gathering ZeRO-3 partitions one at a time
    (a collective: every rank must call it). Returns (hash, parameter names, dtype)."""
    named = list(module.named_parameters())
    partitioned = any(hasattr(p, "ds_id") for _, p in named)
    gathered: list[tuple[str, torch.Tensor]] = []
    if partitioned:
        import deepspeed

        for name, param in named:
            with deepspeed.zero.GatheredParameters([param], modifier_rank=None):
                gathered.append((name, param.detach().to("cpu").clone()))
    else:
        gathered = [(name, param.detach()) for name, param in named]
    dtype = gathered[0][1].dtype
    return tensors_fingerprint(gathered), [n for n, _ in gathered], dtype
