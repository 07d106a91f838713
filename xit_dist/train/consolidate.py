"""Turn a phase's final DeepSpeed checkpoint into a normal transformers directory, with
DeepSpeed's own tool (``zero_to_fp32``) for ZeRO 1-3 shards, and check the result against the
fingerprint the engine computed from its live parameters."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import torch

from xit_dist.errors import XitError
from xit_dist.train.checkpoint_manifest import find_damage
from xit_dist.train.fingerprint import state_dict_fingerprint
from xit_dist.train.checkpoint import CHECKPOINT_TAG, PROGRESS_FILE


class ConsolidationError(XitError):
    """Weights that must not be saved or evaluated: a damaged checkpoint, non-finite values, or
    consolidated weights that differ from the engine's. The CLI prints it as one line."""

    exit_code = 1


def first_non_finite(state: dict[str, torch.Tensor]) -> str | None:
    """The first parameter (in name order) holding NaN or an infinity; None when all are finite."""
    for name in sorted(state):
        tensor = state[name]
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None


def check_weights(checkpoint_dir: Path, state: dict[str, torch.Tensor]) -> None:
    """Refuse weights a diverged run or a damaged file left: what they would score means nothing."""
    name = first_non_finite(state)
    if name is not None:
        bad = state[name][~torch.isfinite(state[name])]
        raise ConsolidationError(
            f"{checkpoint_dir}: parameter {name} holds {bad.numel()} non-finite value(s) (first {bad[0].item()}); "
            "refusing to save or evaluate these weights (the training diverged or the checkpoint is damaged)"
        )


def full_state_dict(checkpoint_dir: Path) -> dict[str, torch.Tensor]:
    """fp32 weights of the whole model from a (merged) DeepSpeed checkpoint directory."""
    zero_files = list((checkpoint_dir / CHECKPOINT_TAG).glob("*optim_states.pt"))
    if zero_files:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # progress chatter
            state = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint_dir), tag=CHECKPOINT_TAG)
    else:  # ZeRO-0 writes no shards: the weights are the model states' "module"
        states = torch.load(checkpoint_dir / CHECKPOINT_TAG / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
        state = states["module"]
    return {name: tensor.float() for name, tensor in state.items()}


def read_progress(checkpoint_dir: Path) -> dict[str, Any]:
    return json.loads((checkpoint_dir / PROGRESS_FILE).read_text())


def consolidate(
    checkpoint_dir: Path, init_dir: str, tokenizer_dir: str, task_name: str, saves: str, out_dir: Path, revision: str | None = None
) -> dict[str, Any]:
    """Write ``out_dir`` (the encoder alone, or the whole model with its head) and return the
    phase record: progress, fingerprints, and whether they agree."""
    from transformers import AutoConfig, AutoTokenizer

    from xit_dist.tasks.registry import get_task
    from xit_dist.tasks.formats import get_format

    damage = find_damage(checkpoint_dir)
    if damage is not None:
        raise ConsolidationError(f"damaged checkpoint file {checkpoint_dir}/{damage}; rerun the same command to resume from an intact one")
    progress = read_progress(checkpoint_dir)
    state = full_state_dict(checkpoint_dir)
    check_weights(checkpoint_dir, state)
    if "mixture" in progress:  # a multi-task phase: heads on one shared encoder (train.multitask)
        from xit_dist.train.multitask import members_from_record, multitask_model_from_config

        model = multitask_model_from_config(init_dir, members_from_record(progress["mixture"]), revision)
    else:
        task = get_task(task_name)
        fmt = get_format(task.format)
        model = fmt.model_class().from_config(AutoConfig.from_pretrained(init_dir, revision=revision, **fmt.label_config(task)))
    model.load_state_dict(state, strict=True)
    encoder = model.base_model
    encoder_state = encoder.state_dict()
    names = [name for name, _ in encoder.named_parameters()]
    dtype = getattr(torch, progress["engine_dtype"])
    consolidated = state_dict_fingerprint(encoder_state, names, dtype)
    if consolidated != progress["final_engine_fingerprint"]:
        raise ConsolidationError(
            f"consolidated weights of {checkpoint_dir} differ from the engine's parameters "
            f"({consolidated[:12]} != {progress['final_engine_fingerprint'][:12]})"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (model if saves == "model" else encoder).save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(tokenizer_dir, revision=revision).save_pretrained(out_dir)
    return {**progress, "consolidated_fingerprint": consolidated, "encoder_parameter_names": len(names)}
