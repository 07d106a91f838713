"""``xit-dist plan``: what a spec will train, what is already done, and whether it fits —
printed before anything starts."""

from __future__ import annotations

from pathlib import Path

from xit_dist.estimate import ModelSize, estimate, format_bytes, model_size
from xit_dist.plan import Phase, build_plan, phase_dir
from xit_dist.spec import ExperimentSpec
from xit_dist.train.ds_config import load_ds_config, resolve_ds_config
from xit_dist.train.phase import DONE_FILE


def phase_status(spec: ExperimentSpec, phase: Phase) -> str:
    if (phase_dir(spec, phase) / DONE_FILE).is_file():
        return "done (will be reused)"
    ray_run = Path(spec.output_dir).expanduser().resolve() / "ray" / phase.id
    if (ray_run / "checkpoint_manager_snapshot.json").is_file():
        return "interrupted (resumes from its last checkpoint)"
    return "to train"


def base_model_size(spec: ExperimentSpec, phase: Phase) -> ModelSize:
    from transformers import AutoConfig

    from xit_dist.assets import resolve_model_dir
    from xit_dist.errors import ModelError
    from xit_dist.tasks import get_task
    from xit_dist.tasks.formats import get_format

    name = resolve_model_dir(spec.model.name_or_path)
    fmt = get_format(get_task(phase.task).format)
    try:
        config = AutoConfig.from_pretrained(name, revision=spec.model.revision, **fmt.label_config(get_task(phase.task)))
    except Exception as err:
        raise ModelError(f"model.name_or_path {spec.model.name_or_path}: cannot load its config: {str(err).splitlines()[0]}") from None
    return model_size(config, fmt.model_class())


def render_plan(spec: ExperimentSpec, gpu_memory: int | None = None) -> str:
    phases = build_plan(spec)
    ds_config = load_ds_config(resolve_ds_config(spec.distributed.deepspeed_config))
    stage = ds_config.get("zero_optimization", {}).get("stage", 0)
    workers = spec.distributed.num_workers
    size = base_model_size(spec, phases[0])
    gpu = " + 1 GPU" if spec.distributed.use_gpu else ""
    lines = [
        f"{spec.name}: {len(phases)} phase(s), {workers} workers ({spec.distributed.cpus_per_worker:g} CPU{gpu} each), "
        f"ZeRO-{stage} ({spec.distributed.deepspeed_config}), {'bf16' if spec.distributed.bf16 else 'fp32'}",
        f"model {spec.model.name_or_path}: {size.total_params / 1e6:.1f}M parameters "
        f"(largest layer {size.largest_layer_params / 1e6:.1f}M), {size.num_layers} layers x {size.hidden_size}",
    ]
    warnings = []
    for phase in phases:
        training = phase.training
        micro = training.micro_batch_size or training.batch_size // workers
        memory = estimate(size, ds_config, workers, micro, training.max_seq_length, spec.distributed.bf16)
        start = phase.upstream.id if phase.upstream else spec.model.name_or_path
        lines += [
            "",
            f"phase {phase.index + 1} {phase.kind} {phase.task} [{phase.id}]: {phase_status(spec, phase)}",
            f"  hash {phase.hash}",
            f"  starts from {start}; saves its {phase.saves} to {phase_dir(spec, phase)}",
            f"  batch {training.batch_size} = micro {micro} x {training.batch_size // (micro * workers)} accumulation x {workers} workers; "
            f"max length {training.max_seq_length}",
            f"  per GPU: model states {format_bytes(memory.model_states_bytes)} ({memory.source}), "
            f"activations {format_bytes(memory.activation_bytes)}, total {format_bytes(memory.total_bytes)}",
        ]
        if gpu_memory is not None and memory.total_bytes > gpu_memory:
            warnings.append(
                f"warning: phase {phase.index + 1} ({phase.task}) needs about {format_bytes(memory.total_bytes)} per GPU, "
                f"more than {format_bytes(gpu_memory)}: use more workers, a higher ZeRO stage, offload, bf16 or a smaller micro batch"
            )
    if warnings:
        lines += ["", *warnings]
    return "\n".join(lines)
