"""The only place where jobs for the workers are built from a resolved spec: a training phase's
``PhaseJob`` and an evaluation's ``EvalJob``. Each phase's ``FormatOptions`` and DeepSpeed
config are built here once, so the workers never re-read the user's files."""

from __future__ import annotations

from pathlib import Path

from xit_dist.config.spec import ExperimentSpec
from xit_dist.data.stage import stage_data
from xit_dist.evaluate.job import EvalJob
from xit_dist.config.layout import phase_dir
from xit_dist.plan.phases import EncoderEvaluation, Phase
from xit_dist.plan.preflight import ResolvedInputs
from xit_dist.tasks.formats.options import FormatOptions
from xit_dist.config.ds_config import load_ds_config
from xit_dist.tracking.object_files import shared_location
from xit_dist.train.job import PhaseJob


def format_options(spec: ExperimentSpec, phase: Phase | EncoderEvaluation) -> FormatOptions:
    """How the phase's task is featurised (its training settings) and decoded (the evaluation's)."""
    training, evaluation = phase.training, spec.evaluation
    return FormatOptions(
        max_seq_length=training.max_seq_length,
        doc_stride=training.doc_stride,
        max_query_length=training.max_query_length,
        n_best=evaluation.n_best,
        max_answer_length=evaluation.max_answer_length,
        retrieval_layer=evaluation.retrieval_layer,
        pooling=evaluation.pooling,
    )


def _optional_str(path: Path | None) -> str | None:
    return str(path) if path else None


def phase_job(spec: ExperimentSpec, phase: Phase, init_dir: str, inputs: ResolvedInputs, tracking_uri: str, run_id: str) -> PhaseJob:
    """Everything a worker of ``phase`` needs; a target phase also carries the evaluation its
    workers run before the final checkpoint."""
    options = format_options(spec, phase)
    evaluation = eval_job(spec, phase, inputs, options=options) if phase.kind == "target" else None
    return PhaseJob(
        phase_id=phase.id,
        phase_dir=shared_location(phase_dir(spec, phase)),
        task=phase.task,
        init_dir=init_dir,
        tokenizer_dir=inputs.model_dir,
        model_revision=spec.model.revision,
        data_dir=_optional_str(inputs.data_dir_for(phase.task)),
        data_revision=spec.data.revision,
        training=phase.training,
        options=options,
        seed=spec.seed,
        ds_config=load_ds_config(spec.distributed.deepspeed_config),  # parsed once per phase
        bf16=spec.distributed.bf16,
        cpus_per_worker=spec.distributed.cpus_per_worker,
        tracking_uri=tracking_uri,
        mlflow_run_id=run_id,
        system_metrics_interval_s=spec.tracking.system_metrics_interval_s,
        evaluation=evaluation,
        stage=stage_data(spec.intermediate[phase.index], inputs) if phase.kind == "intermediate" else None,
    )


def eval_job(spec: ExperimentSpec, phase: Phase | EncoderEvaluation, inputs: ResolvedInputs,
             model_dir: Path | str | None = None, options: FormatOptions | None = None) -> EvalJob:
    """Zero-shot evaluation of ``phase``'s task on every evaluation language; ``model_dir`` None
    means the live model at the end of the target phase."""
    return EvalJob(
        phase_id=phase.id,
        task=phase.task,
        model_dir=str(model_dir) if model_dir else None,
        model_revision=spec.model.revision,
        data_dir=_optional_str(inputs.data_dir_for(phase.task)),
        data_revision=spec.data.revision,
        split=spec.evaluation.split,
        languages=inputs.eval_languages,
        batch_size=spec.evaluation.batch_size,
        options=options or format_options(spec, phase),
        max_examples_per_language=spec.evaluation.max_examples_per_language,
        bf16=spec.distributed.bf16,
        cpus_per_worker=spec.distributed.cpus_per_worker,
        perturbations=spec.evaluation.perturbations,
        calibration=spec.evaluation.calibration,
    )
