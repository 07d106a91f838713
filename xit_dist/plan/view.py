"""``xit-dist plan``: what a spec will train, what is already done, and whether it fits —
printed before anything starts."""

from __future__ import annotations

from pathlib import Path

from xit_dist.plan.estimate import ModelSize, estimate, format_bytes, model_size
from xit_dist.plan.phases import EncoderEvaluation, Phase, build_plan, encoder_evaluation, phase_dir
from xit_dist.config.spec import ExperimentSpec
from xit_dist.train.ds_config import load_ds_config, resolve_ds_config
from xit_dist.train.phase import DONE_FILE


def phase_status(spec: ExperimentSpec, phase: Phase) -> str:
    if (phase_dir(spec, phase) / DONE_FILE).is_file():
        return "done (will be reused)"
    ray_run = Path(spec.output_dir).expanduser().resolve() / "ray" / phase.id
    if (ray_run / "checkpoint_manager_snapshot.json").is_file():
        return "interrupted (resumes from its last checkpoint)"
    return "to train"


def base_model_size(spec: ExperimentSpec, task_name: str) -> ModelSize:
    from transformers import AutoConfig

    from xit_dist.builtin.assets import resolve_model_dir
    from xit_dist.errors import ModelError
    from xit_dist.tasks import get_task
    from xit_dist.tasks.formats import get_format

    from xit_dist.plan.model_config import shipped_config_dir

    # a hub model the paper uses: its shipped config.json, so the plan needs no hub access
    name = shipped_config_dir(spec.model.name_or_path) or resolve_model_dir(spec.model.name_or_path)
    task_name = task_name.split("+")[0]  # a mixture ("mnli+qqp"): its first task's head; heads are small next to the encoder
    fmt = get_format(get_task(task_name).format)
    try:
        config = AutoConfig.from_pretrained(name, revision=spec.model.revision, **fmt.label_config(get_task(task_name)))
    except Exception as err:
        raise ModelError(f"model.name_or_path {spec.model.name_or_path}: cannot load its config: {str(err).splitlines()[0]}") from None
    return model_size(config, fmt.model_class())


def filled_ds_config(ds_config: dict, spec: ExperimentSpec, training, size: ModelSize) -> dict:
    """The DeepSpeed config as the worker fills it (``fill_auto``): its precision is what the estimate counts."""
    from xit_dist.train.ds_config import fill_auto

    workers = spec.distributed.num_workers
    micro = training.micro_batch_size or training.batch_size // workers
    return fill_auto(
        ds_config, micro_batch_size=micro, gradient_accumulation_steps=training.batch_size // (micro * workers),
        world_size=workers, learning_rate=training.learning_rate, weight_decay=training.weight_decay,
        adam_epsilon=training.adam_epsilon, max_grad_norm=training.max_grad_norm, bf16=spec.distributed.bf16,
        hidden_size=size.hidden_size,
    )


def render_plan(spec: ExperimentSpec, gpu_memory: int | None = None) -> str:
    phases = build_plan(spec)
    ds_config = load_ds_config(resolve_ds_config(spec.distributed.deepspeed_config))
    stage = ds_config.get("zero_optimization", {}).get("stage", 0)
    workers = spec.distributed.num_workers
    size = base_model_size(spec, phases[0].task if phases else spec.target.task)
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
        memory = estimate(size, filled_ds_config(ds_config, spec, training, size), workers, micro, training.max_seq_length, spec.distributed.bf16)
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
        lines += training_from_lines(spec, phase)
        if gpu_memory is not None and memory.total_bytes > gpu_memory:
            warnings.append(
                f"warning: phase {phase.index + 1} ({phase.task}) needs about {format_bytes(memory.total_bytes)} per GPU, "
                f"more than {format_bytes(gpu_memory)}: use more workers, a higher ZeRO stage, offload, bf16 or a smaller micro batch"
            )
    evaluation = encoder_evaluation(spec, phases)
    if evaluation is not None:
        lines += ["", *describe_encoder_evaluation(spec, evaluation, size)]
    if warnings:
        lines += ["", *warnings]
    return "\n".join(lines)


def describe_encoder_evaluation(spec: ExperimentSpec, evaluation: EncoderEvaluation, size: ModelSize) -> list[str]:
    """A target without a training phase (retrieval): which encoder it reads and how."""
    from xit_dist.tasks.formats.retrieval import hidden_layer
    from xit_dist.tasks.formats.options import FormatOptions

    options = FormatOptions(retrieval_layer=spec.evaluation.retrieval_layer, pooling=spec.evaluation.pooling)
    return [
        f"target {evaluation.task}: no training phase; evaluated straight from {evaluation.encoder}",
        f"  sentence embeddings: hidden_states[{hidden_layer(size.num_layers, options)}] of {size.num_layers} layers, "
        f"{spec.evaluation.pooling} pooling, max length {evaluation.training.max_seq_length} (or the tokenizer's limit)",
    ]


def training_from_lines(spec: ExperimentSpec, phase: Phase) -> list[str]:
    """An intermediate stage trained with a search's best configuration: which values it took."""
    stage = spec.intermediate[phase.index] if phase.kind == "intermediate" else None
    if stage is None or not stage.training_from:
        return []
    from xit_dist.tune.best import describe_training_from

    return describe_training_from(stage.training_from, spec.output_dir, phase.training.model_dump(mode="json"))


def render_grid_plan(grid, gpu_memory: int | None = None) -> str:
    """``xit-dist plan GRID``: every distinct phase once, with its hash, its state, the cells
    that share it and what its worker group needs; then the totals (phases to train vs cells)."""
    from collections import Counter

    from xit_dist.errors import ModelError
    from xit_dist.plan.grid import shared_phases

    phases = sorted(shared_phases(grid.cells), key=lambda sp: (sp.phase.kind != "intermediate", sp.phase.index))
    sizes: dict[tuple, ModelSize | str] = {}
    state = {sp.hash: phase_status(sp.cells[0].spec, sp.phase) for sp in phases}
    without_sharing = sum(len(cell.phases) for cell in grid.cells)
    kinds = Counter(sp.phase.kind for sp in phases)
    to_train = [sp for sp in phases if not state[sp.hash].startswith("done")]
    first = grid.cells[0].spec
    lines = [
        f"grid {grid.name} ({grid.source}): {len(grid.cells)} cells = {grid.shape()}",
        f"output_dir {Path(first.output_dir).expanduser().resolve()}; MLflow experiment {first.tracking.experiment!r}",
    ]
    warnings: list[str] = []
    for sp in phases:
        spec, phase = sp.cells[0].spec, sp.phase
        d = spec.distributed
        key = (spec.model.name_or_path, spec.model.revision, phase.task)
        if key not in sizes:
            try:
                sizes[key] = base_model_size(spec, phase.task)
            except ModelError as err:
                sizes[key] = str(err)
        training, workers = phase.training, d.num_workers
        micro = training.micro_batch_size or training.batch_size // workers
        ds_config = load_ds_config(resolve_ds_config(d.deepspeed_config))
        size = sizes[key]
        if isinstance(size, str):
            memory_text = "per GPU: unknown (no model config, see the end)"
        else:
            memory = estimate(size, filled_ds_config(ds_config, spec, training, size), workers, micro, training.max_seq_length, d.bf16)
            memory_text = f"per GPU {format_bytes(memory.total_bytes)} (model states {format_bytes(memory.model_states_bytes)})"
            if gpu_memory is not None and memory.total_bytes > gpu_memory:
                warnings.append(f"warning: {phase.id} needs about {format_bytes(memory.total_bytes)} per GPU, more than {format_bytes(gpu_memory)}")
        names = [cell.name for cell in sp.cells]
        shown = ", ".join(names[:3]) + (f", ... (+{len(names) - 3} more)" if len(names) > 3 else "")
        gpu = " + 1 GPU" if d.use_gpu else ""
        lines += [
            "",
            f"{phase.kind} {phase.task} [{phase.id}]: {state[sp.hash]}",
            f"  hash {phase.hash}",
            f"  starts from {phase.upstream.id if phase.upstream else spec.model.name_or_path}",
            f"  shared by {len(names)} cell(s): {shown}",
            f"  needs {workers} workers x ({d.cpus_per_worker:g} CPU{gpu}), {d.deepspeed_config}, {'bf16' if d.bf16 else 'fp32'}; "
            f"batch {training.batch_size} = micro {micro} x {training.batch_size // (micro * workers)} accumulation x {workers}; "
            f"max length {training.max_seq_length}; {memory_text}",
        ]
        lines += training_from_lines(spec, phase)
    encoder_only = [cell for cell in grid.cells if encoder_evaluation(cell.spec, cell.phases) is not None]
    lines += [
        "",
        f"totals: {len(phases)} distinct phases for {len(grid.cells)} cells ({kinds['intermediate']} intermediate, {kinds['target']} target; "
        f"{without_sharing} if every cell trained its own): {len(phases) - len(to_train)} done, {len(to_train)} to train; "
        f"{len(grid.cells)} evaluations",
    ]
    if encoder_only:
        targets = sorted({cell.spec.target.task for cell in encoder_only})
        lines.append(f"targets without a training phase (evaluated from an encoder): {', '.join(targets)} ({len(encoder_only)} cells)")
    unknown = sorted({size for size in sizes.values() if isinstance(size, str)})
    if unknown:
        lines += ["", *(f"no memory estimates: {problem}" for problem in unknown)]
    if warnings:
        lines += ["", *warnings]
    return "\n".join(lines)
