"""The micro-batch rule: how a phase's global ``batch_size`` splits into a micro batch per worker
and gradient-accumulation steps. The spec validates it, ``plan`` shows it, the worker trains
with it and ``fill_auto`` writes it into the DeepSpeed config's ``"auto"`` batch keys.

It lives in ``config`` (not beside ``config/ds_config.py``) because the spec's own validation uses
it, and ``config`` imports nothing above it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class BatchSettings(Protocol):
    """What the rule reads of a stage's ``TrainingConfig`` (config/spec.py, which validates with
    this rule: so a protocol here, not an import of the spec)."""

    batch_size: int
    micro_batch_size: int | None


@dataclass(frozen=True)
class BatchSplit:
    """``batch_size = micro_batch_size x accumulation_steps x workers``."""

    micro_batch_size: int      # per worker and forward pass
    accumulation_steps: int    # micro batches per optimizer step
    workers: int

    @property
    def global_batch(self) -> int:
        return self.micro_batch_size * self.accumulation_steps * self.workers


def split_batch(training: BatchSettings, workers: int) -> BatchSplit:
    """The micro batch is ``training.micro_batch_size`` when set, else ``batch_size / workers``;
    the rest of the batch is gradient accumulation. ValueError when ``batch_size`` is not a
    multiple of micro batch x workers (the spec's validation says it, naming the field)."""
    batch_size = training.batch_size
    micro = training.micro_batch_size or batch_size // workers
    if micro < 1 or batch_size % (micro * workers):
        raise ValueError(f"{batch_size} is not a multiple of micro_batch_size x num_workers ({micro} x {workers})")
    return BatchSplit(micro, batch_size // (micro * workers), workers)
