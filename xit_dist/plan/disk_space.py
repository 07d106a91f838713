"""Free space under ``output_dir`` against what the phases to train will write there, said
before training starts: a full disk otherwise shows up only when a checkpoint fails to save,
in the middle of a phase.

What a phase writes, from the model's parameter count P (the plan's model size):
- DeepSpeed checkpoints of about 16 bytes a parameter over all ranks: the module's weights
  (4 bytes in fp32, 2 in bf16) and the optimizer's fp32 state (master partition, Adam's two
  moments: 12 bytes). Ray keeps two per phase (``CheckpointConfig(num_to_keep=2)``) and writes
  the next before it drops the oldest, so three at once; with English-dev selection a copy of
  the best one (``best/``) besides;
- the consolidated model in fp32 safetensors, 4 bytes a parameter.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from xit_dist.plan.estimate import format_bytes

CHECKPOINTS_AT_ONCE = 3
OPTIMIZER_BYTES = 12     # fp32 master partition + Adam's exp_avg and exp_avg_sq
SAVED_MODEL_BYTES = 4    # consolidated fp32 weights


def checkpoint_bytes(total_params: int, bf16: bool) -> int:
    return total_params * ((2 if bf16 else 4) + OPTIMIZER_BYTES)


def phase_bytes(total_params: int, bf16: bool, selects_best: bool) -> int:
    """What one phase leaves (and holds at its peak) under output_dir."""
    checkpoints = CHECKPOINTS_AT_ONCE + (1 if selects_best else 0)
    return checkpoints * checkpoint_bytes(total_params, bf16) + total_params * SAVED_MODEL_BYTES


def shortage_warning(output_dir: Path, need: int, phases: int, per_checkpoint: int) -> str | None:
    """One line when ``output_dir``'s filesystem has less free space than ``need`` bytes."""
    free = shutil.disk_usage(output_dir).free
    if free >= need:
        return None
    return (f"warning: output_dir {output_dir} has {format_bytes(free)} free; the {phases} phase(s) to train need about "
            f"{format_bytes(need)} (DeepSpeed checkpoints of {format_bytes(per_checkpoint)}, up to 3 at once per phase, "
            f"and the saved models): free space or choose another output_dir, else a checkpoint will fail to save")
