"""One experiment run: preflight -> plan -> each phase on Ray Train (reusing phases already
done) -> zero-shot evaluation -> MLflow and the console table."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from xit_dist.evaluate.results import TaskResults
from xit_dist.plan import Phase, build_plan, phase_dir
from xit_dist.preflight import ResolvedInputs, preflight
from xit_dist.spec import ExperimentSpec, dump_spec
from xit_dist.storage import check_shared_storage, cluster_hosts
from xit_dist.tasks import get_task
from xit_dist.tracking import Tracker, flatten, resolve_tracking_uri
from xit_dist.train.ds_config import load_ds_config, resolve_ds_config
from xit_dist.train.jobs import EvalJob, PhaseJob
from xit_dist.train.phase import PhaseOutcome, PhaseResources, run_phase


@dataclass
class RunSummary:
    run_dir: Path
    tracking_uri: str
    parent_run_id: str
    phase_run_ids: dict[str, str]
    phases: list[PhaseOutcome]
    results: TaskResults


_START = time.monotonic()


def say(message: str) -> None:
    stamp = time.monotonic() - _START
    print(f"[{stamp:6.1f}s] {message}" if message else "", file=sys.stdout, flush=True)


def start_ray(address: str | None) -> None:
    """Connect to the cluster the spec names, or start a local Ray in-process."""
    import ray

    if ray.is_initialized():
        return
    from xit_dist.logs import WORKER_ENV

    # address None: always a new local instance ("local"), never a `ray start` cluster that
    # happens to run on this machine; name one ("auto", "host:port") to use a cluster.
    local = {"dashboard_host": "127.0.0.1"} if address is None else {}
    ray.init(address=address or "local", logging_level="WARNING", runtime_env={"env_vars": WORKER_ENV}, **local)


def check_cluster_resources(spec: ExperimentSpec) -> None:
    import ray

    from xit_dist.errors import XitError

    available = ray.cluster_resources()
    need_cpu = spec.distributed.num_workers * spec.distributed.cpus_per_worker
    need_gpu = spec.distributed.num_workers if spec.distributed.use_gpu else 0
    if available.get("CPU", 0) < need_cpu or available.get("GPU", 0) < need_gpu:
        raise XitError(
            f"distributed: the cluster has {available.get('CPU', 0):g} CPU / {available.get('GPU', 0):g} GPU, "
            f"the spec needs {need_cpu:g} CPU / {need_gpu:g} GPU ({spec.distributed.num_workers} workers)"
        )


def phase_job(spec: ExperimentSpec, phase: Phase, init_dir: str, inputs: ResolvedInputs, tracking_uri: str, run_id: str) -> PhaseJob:
    evaluation = eval_job(spec, phase, inputs) if phase.kind == "target" else None
    return PhaseJob(
        phase_id=phase.id,
        phase_dir=str(phase_dir(spec, phase)),
        task=phase.task,
        init_dir=init_dir,
        tokenizer_dir=inputs.model_dir,
        data_dir=str(inputs.data_dir) if inputs.data_dir else None,
        data_revision=spec.data.revision,
        training=phase.training.model_dump(),
        seed=spec.seed,
        ds_config=load_ds_config(resolve_ds_config(spec.distributed.deepspeed_config)),
        bf16=spec.distributed.bf16,
        cpus_per_worker=spec.distributed.cpus_per_worker,
        tracking_uri=tracking_uri,
        mlflow_run_id=run_id,
        evaluation=evaluation,
    )


def eval_job(spec: ExperimentSpec, phase: Phase, inputs: ResolvedInputs, model_dir: Path | None = None) -> EvalJob:
    return EvalJob(
        phase_id=phase.id,
        task=phase.task,
        model_dir=str(model_dir) if model_dir else None,
        data_dir=str(inputs.data_dir) if inputs.data_dir else None,
        data_revision=spec.data.revision,
        split=spec.evaluation.split,
        languages=inputs.eval_languages,
        batch_size=spec.evaluation.batch_size,
        max_seq_length=phase.training.max_seq_length,
        max_examples_per_language=spec.evaluation.max_examples_per_language,
        bf16=spec.distributed.bf16,
        cpus_per_worker=spec.distributed.cpus_per_worker,
    )


def evaluate_target(spec: ExperimentSpec, phase: Phase, outcome: PhaseOutcome, inputs: ResolvedInputs, storage: str) -> TaskResults:
    """Use the evaluation the target phase ran on its workers when its settings match;
    otherwise (a reused phase, other languages...) evaluate the saved model in its own worker group.
    Cached per (phase, evaluation settings) under the phase directory."""
    from xit_dist.evaluate.zero_shot import evaluation_key, run_evaluation

    job = eval_job(spec, phase, inputs, outcome.output_dir)
    key = evaluation_key(job)
    cache = phase_dir(spec, phase) / "eval" / f"{key}.json"
    if cache.is_file():
        evaluation = json.loads(cache.read_text())
    elif outcome.record.get("evaluation", {}).get("key") == key:
        evaluation = outcome.record["evaluation"]
    else:
        say(f"== evaluation {phase.task} ({spec.evaluation.split}) of {outcome.output_dir}")
        evaluation = run_evaluation(
            job, spec.distributed.num_workers, spec.distributed.use_gpu, storage, f"{phase.id}-eval-{key}-{int(time.time())}"
        )
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(evaluation, indent=2))
    per_language = {lang: evaluation["results"][lang] for lang in inputs.eval_languages}
    task = get_task(phase.task)
    chance = 100.0 / task.num_labels if task.metric == "accuracy" else None
    return TaskResults(phase.task, spec.evaluation.split, per_language, evaluation["counts"], chance)


def run_experiment(spec: ExperimentSpec, out: Callable[[str], None] = say) -> RunSummary:
    output_dir = Path(spec.output_dir).expanduser().resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    run_dir = output_dir / "runs" / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.yaml").write_text(dump_spec(spec))

    from xit_dist.logs import quiet_third_party

    quiet_third_party()
    out(f"== preflight: model {spec.model.name_or_path}, data {spec.data.local_dir or 'hub'}")
    inputs = preflight(spec)
    phases = build_plan(spec)
    tracking_uri = resolve_tracking_uri(spec.tracking.uri, output_dir)
    tracker = Tracker(tracking_uri, spec.tracking.experiment, output_dir / "mlartifacts" if tracking_uri.startswith("sqlite") else None)
    start_ray(spec.distributed.address)
    check_cluster_resources(spec)
    check_shared_storage(output_dir, cluster_hosts(), spec.distributed.assume_shared_storage)

    parent = tracker.parent_run(spec.name, spec.fingerprint())
    tracker.log_params(parent, flatten(spec.model_dump(mode="json")))
    tracker.set_tags(parent, {"xit.target": spec.target.task, "xit.intermediate": ",".join(s.task for s in spec.intermediate) or "none"})
    tracker.log_artifacts(parent, [run_dir / "spec.yaml"])
    storage = str(output_dir / "ray")
    resources = PhaseResources(
        spec.distributed.num_workers, spec.distributed.use_gpu, spec.distributed.cpus_per_worker, spec.distributed.max_failures, storage
    )
    init_dir = inputs.model_dir
    outcomes: list[PhaseOutcome] = []
    child_ids: dict[str, str] = {}
    try:
        for phase in phases:
            child = tracker.child_run(parent, f"{phase.kind}:{phase.task}", phase.hash, {"xit.phase_id": phase.id, "xit.kind": phase.kind, "xit.task": phase.task})
            child_ids[phase.id] = child
            tracker.log_params(child, {"phase.task": phase.task, "phase.kind": phase.kind, "phase.init": init_dir, **flatten(phase.training.model_dump(), "training.")})
            out(f"== phase {phase.index + 1}/{len(phases)} {phase.kind} {phase.task} [{phase.id}] from {init_dir}")
            outcome = run_phase(phase_job(spec, phase, init_dir, inputs, tracking_uri, child), phase.saves, phase_dir(spec, phase), resources)
            if outcome.reused:
                out(f"   already trained: reusing {outcome.output_dir}")
            tracker.log_artifacts(child, [phase_dir(spec, phase) / "phase.json"])
            outcomes.append(outcome)
            init_dir = str(outcome.output_dir)
            if phase.kind != "target":
                tracker.finish(child)

        target_phase, target_outcome = phases[-1], outcomes[-1]
        results = evaluate_target(spec, target_phase, target_outcome, inputs, storage)
        artifacts = results.write(run_dir)
        for run_id in (child_ids[target_phase.id], parent):
            tracker.log_metrics(run_id, results.mlflow_metrics())
            tracker.log_artifacts(run_id, artifacts, "results")
        tracker.finish(child_ids[target_phase.id])
        tracker.finish(parent)
    except BaseException:
        for run_id in [*child_ids.values(), parent]:
            if tracker.client.get_run(run_id).info.status == "RUNNING":
                tracker.finish(run_id, "FAILED")
        raise

    out("")
    out(results.table())
    out(f"\nresults: {run_dir}\nMLflow: {tracking_uri} (experiment {spec.tracking.experiment!r}, run {parent})")
    return RunSummary(run_dir, tracking_uri, parent, child_ids, outcomes, results)
