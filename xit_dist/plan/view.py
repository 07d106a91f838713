"""``xit-dist plan``: what a spec will train, what is already done, and whether it fits —
printed before anything starts."""

from __future__ import annotations


from xit_dist.plan.estimate import ModelSize, estimate, format_bytes, model_size
from xit_dist.config.layout import in_bucket, output_root, phase_dir, ray_run_dir
from xit_dist.plan.phases import EncoderEvaluation, Phase, build_plan, encoder_evaluation
from xit_dist.config.spec import ExperimentSpec
from xit_dist.config.batch import split_batch
from xit_dist.config.ds_config import load_ds_config
from xit_dist.tracking.object_files import location_exists
from xit_dist.train.phase import completed_record


def phase_status(spec: ExperimentSpec, phase: Phase) -> str:
    if completed_record(phase_dir(spec, phase)) is not None:
        return "done (will be reused)"
    if location_exists(f"{ray_run_dir(spec, phase)}/checkpoint_manager_snapshot.json"):
        return "interrupted (resumes from its last checkpoint)"
    return "to train"


def base_model_size(spec: ExperimentSpec, task_name: str) -> ModelSize:
    from transformers import AutoConfig

    from xit_dist.builtin.assets import resolve_model_dir
    from xit_dist.errors import ModelError
    from xit_dist.tasks.registry import get_task
    from xit_dist.tasks.formats import get_format

    from xit_dist.config.model_config import shipped_config_dir

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
    from xit_dist.config.ds_config import fill_auto

    split = split_batch(training, spec.distributed.num_workers)
    return fill_auto(
        ds_config, micro_batch_size=split.micro_batch_size, gradient_accumulation_steps=split.accumulation_steps,
        world_size=split.workers, learning_rate=training.learning_rate, weight_decay=training.weight_decay,
        adam_epsilon=training.adam_epsilon, max_grad_norm=training.max_grad_norm, bf16=spec.distributed.bf16,
        hidden_size=size.hidden_size,
    )


def render_plan(spec: ExperimentSpec, gpu_memory: int | None = None) -> str:
    phases = build_plan(spec)
    ds_config = load_ds_config(spec.distributed.deepspeed_config)
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
        split = split_batch(training, workers)
        memory = estimate(size, filled_ds_config(ds_config, spec, training, size), workers, split.micro_batch_size, training.max_seq_length, spec.distributed.bf16)
        start = phase.upstream.id if phase.upstream else spec.model.name_or_path
        lines += [
            "",
            f"phase {phase.index + 1} {phase.kind} {phase.task} [{phase.id}]: {phase_status(spec, phase)}",
            f"  hash {phase.hash}",
            f"  starts from {start}; saves its {phase.saves} to {phase_dir(spec, phase)}",
            f"  batch {training.batch_size} = micro {split.micro_batch_size} x {split.accumulation_steps} accumulation x {workers} workers; "
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
    from xit_dist.tasks.formats import get_format
    from xit_dist.tasks.formats.options import FormatOptions
    from xit_dist.tasks.registry import get_task

    options = FormatOptions(retrieval_layer=spec.evaluation.retrieval_layer, pooling=spec.evaluation.pooling)
    layer = get_format(get_task(evaluation.task).format).embedding_layer(size.num_layers, options)
    return [
        f"target {evaluation.task}: no training phase; evaluated straight from {evaluation.encoder}",
        f"  sentence embeddings: hidden_states[{layer}] of {size.num_layers} layers, "
        f"{spec.evaluation.pooling} pooling, max length {evaluation.training.max_seq_length} (or the tokenizer's limit)",
    ]


def training_from_lines(spec: ExperimentSpec, phase: Phase) -> list[str]:
    """An intermediate stage trained with a search's best configuration: which values it took."""
    stage = spec.intermediate[phase.index] if phase.kind == "intermediate" else None
    if stage is None or not stage.training_from:
        return []
    from xit_dist.config.training_from import describe_training_from

    return describe_training_from(stage.training_from, spec.output_dir, phase.training.model_dump(mode="json"))


def render_grid_plan(grid, gpu_memory: int | None = None) -> str:
    """``xit-dist plan GRID``: every distinct phase once, with its hash, its state, the cells
    that share it and what its worker group needs; then the totals (phases to train vs cells)."""
    from xit_dist.plan.grid import shared_phases

    phases = sorted(shared_phases(grid.cells), key=lambda sp: (sp.phase.kind != "intermediate", sp.phase.index))
    state = {sp.hash: phase_status(sp.cells[0].spec, sp.phase) for sp in phases}
    first = grid.cells[0].spec
    lines = [
        f"grid {grid.name} ({grid.source}): {len(grid.cells)} cells = {grid.shape()}",
        f"output_dir {first.output_dir if in_bucket(first.output_dir) else output_root(first.output_dir)}; MLflow experiment {first.tracking.experiment!r}",
    ]
    sizes: dict[tuple, ModelSize | str] = {}
    warnings: list[str] = []
    for sp in phases:
        lines += ["", *shared_phase_lines(sp, state[sp.hash], sizes, gpu_memory, warnings)]
    lines += ["", *grid_totals_lines(grid, phases, state)]
    unknown = sorted({size for size in sizes.values() if isinstance(size, str)})
    if unknown:
        lines += ["", *(f"no memory estimates: {problem}" for problem in unknown)]
    if warnings:
        lines += ["", *warnings]
    return "\n".join(lines)


def shared_phase_lines(sp, status: str, sizes: dict[tuple, ModelSize | str], gpu_memory: int | None, warnings: list[str]) -> list[str]:
    """One distinct phase of a grid: its state, hash, start, the cells sharing it and its needs.
    ``sizes`` caches model sizes (or why there is none) across phases; a phase that does not fit
    ``gpu_memory`` adds a line to ``warnings``."""
    spec, phase = sp.cells[0].spec, sp.phase
    d = spec.distributed
    training, workers = phase.training, d.num_workers
    split = split_batch(training, workers)
    size = cached_model_size(sizes, spec, phase.task)
    ds_config = load_ds_config(d.deepspeed_config)
    if isinstance(size, str):
        memory_text = "per GPU: unknown (no model config, see the end)"
    else:
        memory = estimate(size, filled_ds_config(ds_config, spec, training, size), workers, split.micro_batch_size, training.max_seq_length, d.bf16)
        memory_text = f"per GPU {format_bytes(memory.total_bytes)} (model states {format_bytes(memory.model_states_bytes)})"
        if gpu_memory is not None and memory.total_bytes > gpu_memory:
            warnings.append(f"warning: {phase.id} needs about {format_bytes(memory.total_bytes)} per GPU, more than {format_bytes(gpu_memory)}")
    names = [cell.name for cell in sp.cells]
    shown = ", ".join(names[:3]) + (f", ... (+{len(names) - 3} more)" if len(names) > 3 else "")
    gpu = " + 1 GPU" if d.use_gpu else ""
    return [
        f"{phase.kind} {phase.task} [{phase.id}]: {status}",
        f"  hash {phase.hash}",
        f"  starts from {phase.upstream.id if phase.upstream else spec.model.name_or_path}",
        f"  shared by {len(names)} cell(s): {shown}",
        f"  needs {workers} workers x ({d.cpus_per_worker:g} CPU{gpu}), {d.deepspeed_config}, {'bf16' if d.bf16 else 'fp32'}; "
        f"batch {training.batch_size} = micro {split.micro_batch_size} x {split.accumulation_steps} accumulation x {workers}; "
        f"max length {training.max_seq_length}; {memory_text}",
        *training_from_lines(spec, phase),
    ]


def cached_model_size(sizes: dict[tuple, ModelSize | str], spec: ExperimentSpec, task: str) -> ModelSize | str:
    """The base model's size with ``task``'s head, or why it cannot be known, computed once per
    (model, revision, task) of a grid."""
    from xit_dist.errors import ModelError

    key = (spec.model.name_or_path, spec.model.revision, task)
    if key not in sizes:
        try:
            sizes[key] = base_model_size(spec, task)
        except ModelError as err:
            sizes[key] = str(err)
    return sizes[key]


def grid_totals_lines(grid, phases: list, state: dict[str, str]) -> list[str]:
    """How many distinct phases the grid trains (done / to train) against its cells, and which
    targets are evaluated straight from an encoder."""
    from collections import Counter

    kinds = Counter(sp.phase.kind for sp in phases)
    to_train = [sp for sp in phases if not state[sp.hash].startswith("done")]
    without_sharing = sum(len(cell.phases) for cell in grid.cells)
    lines = [
        f"totals: {len(phases)} distinct phases for {len(grid.cells)} cells ({kinds['intermediate']} intermediate, {kinds['target']} target; "
        f"{without_sharing} if every cell trained its own): {len(phases) - len(to_train)} done, {len(to_train)} to train; "
        f"{len(grid.cells)} evaluations",
    ]
    encoder_only = [cell for cell in grid.cells if encoder_evaluation(cell.spec, cell.phases) is not None]
    if encoder_only:
        targets = sorted({cell.spec.target.task for cell in encoder_only})
        lines.append(f"targets without a training phase (evaluated from an encoder): {', '.join(targets)} ({len(encoder_only)} cells)")
    return lines
