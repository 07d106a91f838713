"""A phase's DeepSpeed engine on one worker: the batch geometry, the DeepSpeed config filled with
it, the task's model, the optimizer and its schedule, and ``deepspeed.initialize``.

DeepSpeed is imported inside the functions: a worker quiets third-party logs first."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from xit_dist.config.batch import split_batch
from xit_dist.config.spec import TrainingConfig
from xit_dist.train.job import PhaseJob


@dataclass
class BatchGeometry:
    micro_batch_size: int
    accumulation_steps: int
    steps_per_epoch: int
    total_steps: int

    def global_batch(self, world_size: int) -> int:
        return self.micro_batch_size * self.accumulation_steps * world_size


@dataclass
class TrainingEngine:
    """The engine and what was decided on the way to it."""

    engine: Any                     # deepspeed.DeepSpeedEngine
    ds_config: dict[str, Any]       # filled: no "auto" left
    geometry: BatchGeometry
    init_fingerprint: str | None    # the encoder's starting weights (rank 0; None elsewhere)
    keep_zero3_config: Any = None   # HfDeepSpeedConfig under ZeRO-3: must live as long as the engine


def batch_geometry(training: TrainingConfig, world_size: int, micro_batches_per_epoch: int) -> BatchGeometry:
    """The micro-batch rule (``split_batch``) and the epochs or ``max_steps`` in optimizer steps."""
    split = split_batch(training, world_size)
    micro, accumulation = split.micro_batch_size, split.accumulation_steps
    steps_per_epoch = micro_batches_per_epoch // accumulation
    if steps_per_epoch < 1:
        raise ValueError(
            f"training set too small for one step: {micro_batches_per_epoch} micro batches per worker, "
            f"{accumulation} per step"
        )
    total = math.ceil(training.epochs * steps_per_epoch)
    if training.max_steps:
        total = min(total, training.max_steps)
    return BatchGeometry(micro, accumulation, steps_per_epoch, total)


def filled_ds_config(job: PhaseJob, geometry: BatchGeometry, world_size: int) -> dict[str, Any]:
    """The job's DeepSpeed config with every ``"auto"`` replaced (bucket sizes from the model's width)."""
    from transformers import AutoConfig

    from xit_dist.config.ds_config import fill_auto

    training = job.training
    return fill_auto(
        job.ds_config,
        micro_batch_size=geometry.micro_batch_size,
        gradient_accumulation_steps=geometry.accumulation_steps,
        world_size=world_size,
        learning_rate=training.learning_rate,
        weight_decay=training.weight_decay,
        adam_epsilon=training.adam_epsilon,
        max_grad_norm=training.max_grad_norm,
        bf16=job.bf16,
        hidden_size=AutoConfig.from_pretrained(job.init_dir, revision=job.model_revision).hidden_size,
    )


def build_model(job: PhaseJob, ds_config: dict[str, Any], mixture=None):
    """The task's model with the starting encoder and a fresh head (a mixture: one head per
    member on a shared encoder). Under ZeRO-3 it is built already partitioned
    (``HfDeepSpeedConfig`` must stay alive until ``initialize``)."""
    from xit_dist.tasks.formats import get_format
    from xit_dist.tasks.registry import get_task
    from xit_dist.config.ds_config import zero_stage

    keep_alive = None
    if zero_stage(ds_config) == 3:
        from transformers.integrations import HfDeepSpeedConfig

        keep_alive = HfDeepSpeedConfig(ds_config)
    if mixture is not None:
        return mixture.build_model(), keep_alive
    task = get_task(job.task)
    fmt = get_format(task.format)
    model = fmt.model_class().from_pretrained(job.init_dir, revision=job.model_revision, **fmt.label_config(task))
    return model, keep_alive


def build_optimizer(model, training: TrainingConfig, total_steps: int):
    """AdamW with no decay on biases and LayerNorm weights, and linear warm-up then decay
    (the recipe of the paper's jiant scripts)."""
    from transformers import get_linear_schedule_with_warmup

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": training.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=training.learning_rate, eps=training.adam_epsilon)
    warmup = int(training.warmup_ratio * total_steps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total_steps)
    return optimizer, scheduler


def set_up_engine(job: PhaseJob, micro_batches_per_epoch: int, mixture, rank: int, world_size: int) -> TrainingEngine:
    """Model and optimizer handed to ``deepspeed.initialize``, and the starting encoder's
    fingerprint (a collective under ZeRO-3; rank 0 computes it for the phase record).
    ``mixture``: a ``multitask.Mixture`` builds the model of a mixture phase."""
    import deepspeed

    from xit_dist.train.fingerprint import module_fingerprint

    geometry = batch_geometry(job.training, world_size, micro_batches_per_epoch)
    ds_config = filled_ds_config(job, geometry, world_size)
    model, keep_zero3_config = build_model(job, ds_config, mixture)
    optimizer, scheduler = build_optimizer(model, job.training, geometry.total_steps)
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config, dist_init_required=False
    )
    init_fingerprint, _ = module_fingerprint(engine.module.base_model, compute=rank == 0)
    return TrainingEngine(engine, ds_config, geometry, init_fingerprint, keep_zero3_config)
