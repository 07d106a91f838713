"""Exact content hashes of model weights, to prove that what one phase saved is what the
next phase (or the evaluation) loaded, and that consolidation reproduced the engine's weights."""

from __future__ import annotations

import hashlib
from typing import Iterable, Mapping

import torch


def tensors_fingerprint(named: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype | None = None) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(named, key=lambda item: item[0]):
        _update(digest, name, tensor, dtype)
    return digest.hexdigest()


def state_dict_fingerprint(state: Mapping[str, torch.Tensor], names: Iterable[str], dtype: torch.dtype | None = None) -> str:
    return tensors_fingerprint(((n, state[n]) for n in names), dtype)


def module_fingerprint(module: torch.nn.Module, compute: bool = True) -> tuple[str | None, torch.dtype]:
    """Fingerprint of a module's full parameters and their dtype, gathering ZeRO-3 partitions
    one at a time (a collective: every rank must call it). Only a rank with ``compute`` copies
    and hashes them, one parameter at a time; the others return ``None``."""
    import contextlib

    named = sorted(module.named_parameters(), key=lambda item: item[0])
    dtype = named[0][1].dtype
    digest = hashlib.sha256() if compute else None
    for name, param in named:
        if hasattr(param, "ds_id"):  # a ZeRO-3 partition
            import deepspeed

            gathered = deepspeed.zero.GatheredParameters([param], modifier_rank=None)
        else:
            gathered = contextlib.nullcontext()
        with gathered:
            if digest is not None:
                _update(digest, name, param)
    return (digest.hexdigest() if digest is not None else None), dtype


def _update(digest, name: str, tensor: torch.Tensor, dtype: torch.dtype | None = None) -> None:
    value = tensor.detach().to("cpu")
    if dtype is not None:
        value = value.to(dtype)
    digest.update(name.encode())
    digest.update(value.contiguous().view(torch.uint8).numpy().tobytes())
