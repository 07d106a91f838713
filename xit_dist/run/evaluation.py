"""Zero-shot results of a run's target: reused from the cache under the phase directory, taken
from the evaluation the target phase ran on its own workers, or computed by a worker group of
their own."""

from __future__ import annotations

import json
import time
from pathlib import Path

from xit_dist.config.spec import ExperimentSpec
from xit_dist.console import say
from xit_dist.evaluate.job import EvalJob
from xit_dist.evaluate.results import TaskResults
from xit_dist.config.layout import eval_cache_dir
from xit_dist.plan.phases import EncoderEvaluation, Phase
from xit_dist.plan.preflight import ResolvedInputs
from xit_dist.run.jobs import eval_job
from xit_dist.tasks.registry import get_task
from xit_dist.tracking.object_files import local_copy, read_kept_text, shared_location, write_kept_text
from xit_dist.train.phase import PhaseOutcome


def evaluate_target(spec: ExperimentSpec, phase: Phase, outcome: PhaseOutcome, inputs: ResolvedInputs, storage: str) -> TaskResults:
    """Use the evaluation the target phase ran on its workers when its settings match;
    otherwise (a reused phase, other languages...) evaluate the saved model in its own worker group.
    Cached per (phase, evaluation settings) under the phase directory."""
    job = eval_job(spec, phase, inputs, shared_location(outcome.output_dir))
    return cached_evaluation(spec, job, eval_cache_dir(spec, phase), inputs, storage, outcome.record.get("evaluation"))


def evaluate_encoder(spec: ExperimentSpec, evaluation: EncoderEvaluation, model_dir: str, inputs: ResolvedInputs, storage: str) -> TaskResults:
    """A target without a training phase (retrieval): its own worker group evaluates the encoder
    in ``model_dir`` (the last intermediate phase's, or the base model) as it is. Cached per
    (encoder, evaluation settings) under ``phases/<evaluation id>/eval/``."""
    from transformers import AutoConfig

    from xit_dist.tasks.formats import get_format

    job = eval_job(spec, evaluation, inputs, model_dir)
    num_hidden_layers = AutoConfig.from_pretrained(local_copy(model_dir), revision=job.model_revision).num_hidden_layers
    get_format(get_task(job.task).format).embedding_layer(num_hidden_layers, job.options)  # a bad retrieval_layer fails before Ray
    return cached_evaluation(spec, job, eval_cache_dir(spec, evaluation), inputs, storage, None)


def cached_evaluation(spec: ExperimentSpec, job: EvalJob, cache_dir: Path, inputs: ResolvedInputs, storage: str, live: dict | None) -> TaskResults:
    """The cached results of ``job``, else those its phase computed live (same settings), else a
    stand-alone evaluation worker group on ``job.model_dir``."""
    from xit_dist.evaluate.robustness import robustness_part
    from xit_dist.evaluate.zero_shot import evaluation_key, run_evaluation
    from xit_dist.tasks.formats import get_format

    key = evaluation_key(job)
    cache = cache_dir / f"{key}.json"
    cached = read_kept_text(cache)
    if cached is not None:
        evaluation = json.loads(cached)
    elif live and live.get("key") == key:
        evaluation = live
    else:
        say(f"== evaluation {job.task} ({spec.evaluation.split}) of {job.model_dir}")
        evaluation = run_evaluation(
            job, spec.distributed.num_workers, spec.distributed.use_gpu, storage, f"{job.phase_id}-eval-{key}-{int(time.time())}"
        )
    if cached is None:
        write_kept_text(cache, json.dumps(evaluation, indent=2))
    per_language = {lang: evaluation["results"][lang] for lang in inputs.eval_languages}
    task = get_task(job.task)
    chance = get_format(task.format).chance(task)
    return TaskResults(job.task, spec.evaluation.split, per_language, evaluation["counts"], chance, robustness_part(evaluation),
                       datasets=evaluation.get("datasets", []))
