"""One experiment run: preflight -> plan -> each phase on Ray Train (reusing phases already
done) -> zero-shot evaluation -> MLflow and the console table."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from xit_dist.data.stage import stage_data
from xit_dist.evaluate.results import TaskResults
from xit_dist.console import say
from xit_dist.plan.phases import EncoderEvaluation, Phase, build_plan, encoder_evaluation, phase_dir, phases_root
from xit_dist.plan.preflight import ResolvedInputs, preflight
from xit_dist.config.spec import ExperimentSpec, dump_spec
from xit_dist.run.storage import check_shared_storage, cluster_hosts
from xit_dist.tasks import get_task
from xit_dist.tracking.store import Tracker, flatten, resolve_tracking_uri
from xit_dist.train.ds_config import load_ds_config, resolve_ds_config
from xit_dist.evaluate.job import EvalJob
from xit_dist.tasks.formats.options import FormatOptions
from xit_dist.train.job import PhaseJob
from xit_dist.train.phase import DONE_FILE, PhaseOutcome, PhaseResources, output_subdir, run_phase


@dataclass
class RunSummary:
    run_dir: Path
    tracking_uri: str
    parent_run_id: str
    phase_run_ids: dict[str, str]
    phases: list[PhaseOutcome]
    results: TaskResults


API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"
LOOPBACK = "127.0.0.1"
# Ray Train's preemption watcher polls for nodes being drained (spot instances going away); a
# local instance has none, and each watcher's start printed Ray's core_worker error line about
# its restartable actor's arguments into the console. Off for the embedded instance only.
LOCAL_RAY_DEFAULTS = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def start_ray(address: str | None) -> None:
    """Connect to the cluster the spec names, or start a local Ray in-process."""
    import ray

    if ray.is_initialized():
        return
    from xit_dist.console import WORKER_ENV

    # address None: always a new local instance ("local"), never a `ray start` cluster that
    # happens to run on this machine; name one ("auto", "host:port") to use a cluster.
    if address is not None:
        # Connecting to an instance on the loopback (another embedded one, as a test's or a second
        # driver's): Ray would rewrite 127.0.0.1 in the address to this machine's IP, where it listens not.
        with _loopback_node_ip() if _names_loopback(address) else contextlib.nullcontext():
            ray.init(address=address, logging_level="WARNING", runtime_env={"env_vars": WORKER_ENV})
        return
    for name, value in LOCAL_RAY_DEFAULTS.items():
        os.environ.setdefault(name, value)  # read by Ray Train in this process at each fit; a user's setting wins
    # Ray Train frees a run's resources when its driver dies (a trial a search stopped) through
    # the State API, which finds "the" cluster of a machine by auto-detection and fails when
    # several Ray instances run there. The instance's own dashboard address, in the environment
    # its processes start with (and so every worker), removes the guess. It is taken back out of
    # this process's environment: it would redirect later Jobs API calls to other clusters.
    port = _free_local_port()
    with _environment({API_SERVER_ENV: f"http://{LOOPBACK}:{port}"}), _loopback_node_ip():
        ray.init(
            address="local", logging_level="WARNING", runtime_env={"env_vars": WORKER_ENV},
            dashboard_host=LOOPBACK, dashboard_port=port, _node_ip_address=LOOPBACK,
        )


@contextlib.contextmanager
def _environment(values: dict[str, str]):
    """``values`` in this process's environment (and so in every Ray process it starts) while
    the block runs; the previous values are put back after it."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _names_loopback(address: str) -> bool:
    """``127.0.0.1:6379``, ``localhost:6379``, ``ray://127.0.0.1:10001``: an address on this machine's loopback."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.")


@contextlib.contextmanager
def _loopback_node_ip():
    """The embedded instance's node IP is 127.0.0.1, so that everything it starts listens on the
    loopback only: GCS, raylet, workers, the dashboard, its agent and metrics, the autoscaler's
    metrics, the runtime-env agent (measured with Ray 2.60; each binds to the node IP when that
    is a loopback address, else to every interface). Ray only takes a loopback node IP where it
    runs no multi-machine clusters (macOS, Windows): ``ray.init`` turns ``_node_ip_address=
    "127.0.0.1"`` into the machine's address unless ``ray_constants.ENABLE_RAY_CLUSTER`` (read
    once, at import, from RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER) is false. It is false during
    ``ray.init`` only; afterwards the node's own IP is what Ray asks for."""
    from ray._private import ray_constants

    previous = getattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = previous


def _free_local_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


def _optional_str(path: Path | None) -> str | None:
    return str(path) if path else None


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


def phase_job(spec: ExperimentSpec, phase: Phase, init_dir: str, inputs: ResolvedInputs, tracking_uri: str, run_id: str) -> PhaseJob:
    evaluation = eval_job(spec, phase, inputs) if phase.kind == "target" else None
    return PhaseJob(
        phase_id=phase.id,
        phase_dir=str(phase_dir(spec, phase)),
        task=phase.task,
        init_dir=init_dir,
        tokenizer_dir=inputs.model_dir,
        model_revision=spec.model.revision,
        data_dir=_optional_str(inputs.data_dir_for(phase.task)),
        data_revision=spec.data.revision,
        training=phase.training.model_dump(),
        options=format_options(spec, phase),
        seed=spec.seed,
        ds_config=load_ds_config(resolve_ds_config(spec.distributed.deepspeed_config)),
        bf16=spec.distributed.bf16,
        cpus_per_worker=spec.distributed.cpus_per_worker,
        tracking_uri=tracking_uri,
        mlflow_run_id=run_id,
        evaluation=evaluation,
        stage=stage_data(spec.intermediate[phase.index], inputs) if phase.kind == "intermediate" else None,
    )


def eval_job(spec: ExperimentSpec, phase: Phase | EncoderEvaluation, inputs: ResolvedInputs, model_dir: Path | str | None = None) -> EvalJob:
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
        options=format_options(spec, phase),
        max_examples_per_language=spec.evaluation.max_examples_per_language,
        bf16=spec.distributed.bf16,
        cpus_per_worker=spec.distributed.cpus_per_worker,
        perturbations=spec.evaluation.perturbations,
        calibration=spec.evaluation.calibration,
    )


def evaluate_target(spec: ExperimentSpec, phase: Phase, outcome: PhaseOutcome, inputs: ResolvedInputs, storage: str) -> TaskResults:
    """Use the evaluation the target phase ran on its workers when its settings match;
    otherwise (a reused phase, other languages...) evaluate the saved model in its own worker group.
    Cached per (phase, evaluation settings) under the phase directory."""
    job = eval_job(spec, phase, inputs, outcome.output_dir)
    return cached_evaluation(spec, job, phase_dir(spec, phase) / "eval", inputs, storage, outcome.record.get("evaluation"))


def evaluate_encoder(spec: ExperimentSpec, evaluation: EncoderEvaluation, model_dir: str, inputs: ResolvedInputs, storage: str) -> TaskResults:
    """A target without a training phase (retrieval): its own worker group evaluates the encoder
    in ``model_dir`` (the last intermediate phase's, or the base model) as it is. Cached per
    (encoder, evaluation settings) under ``phases/<evaluation id>/eval/``."""
    from transformers import AutoConfig

    from xit_dist.tasks.formats.retrieval import hidden_layer

    job = eval_job(spec, evaluation, inputs, model_dir)
    hidden_layer(AutoConfig.from_pretrained(model_dir, revision=job.model_revision).num_hidden_layers, job.options)  # a bad retrieval_layer fails before Ray
    return cached_evaluation(spec, job, phases_root(spec) / evaluation.id / "eval", inputs, storage, None)


def cached_evaluation(spec: ExperimentSpec, job: EvalJob, cache_dir: Path, inputs: ResolvedInputs, storage: str, live: dict | None) -> TaskResults:
    """The cached results of ``job``, else those its phase computed live (same settings), else a
    stand-alone evaluation worker group on ``job.model_dir``."""
    from xit_dist.evaluate.zero_shot import evaluation_key, run_evaluation
    from xit_dist.tasks.formats import get_format

    key = evaluation_key(job)
    cache = cache_dir / f"{key}.json"
    if cache.is_file():
        evaluation = json.loads(cache.read_text())
    elif live and live.get("key") == key:
        evaluation = live
    else:
        say(f"== evaluation {job.task} ({spec.evaluation.split}) of {job.model_dir}")
        evaluation = run_evaluation(
            job, spec.distributed.num_workers, spec.distributed.use_gpu, storage, f"{job.phase_id}-eval-{key}-{int(time.time())}"
        )
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(evaluation, indent=2))
    per_language = {lang: evaluation["results"][lang] for lang in inputs.eval_languages}
    task = get_task(job.task)
    chance = get_format(task.format).chance(task)
    from xit_dist.evaluate.robustness import robustness_part

    return TaskResults(job.task, spec.evaluation.split, per_language, evaluation["counts"], chance, robustness_part(evaluation))


@dataclass
class PreparedRun:
    """One spec made ready to run: its directories, checked inputs, phases and MLflow store.
    ``run_experiment`` runs one; a grid prepares one per cell and schedules their phases."""

    spec: ExperimentSpec
    output_dir: Path
    run_dir: Path
    inputs: ResolvedInputs
    phases: list[Phase]
    tracking_uri: str

    @property
    def storage(self) -> str:
        """Ray Train's storage path: checkpoints of every phase, on the storage every node reads."""
        return str(self.output_dir / "ray")

    @property
    def resources(self) -> PhaseResources:
        d = self.spec.distributed
        return PhaseResources(d.num_workers, d.use_gpu, d.cpus_per_worker, d.max_failures, self.storage)

    def init_dir(self, phase: Phase | EncoderEvaluation) -> str:
        """Where a phase starts (the encoder an encoder evaluation reads): its upstream phase's
        saved encoder, or the pretrained model."""
        if phase.upstream is None:
            return self.inputs.model_dir
        return str(output_subdir(phase_dir(self.spec, phase.upstream), phase.upstream.saves))


def prepare_run(spec: ExperimentSpec, out: Callable[[str], None] = say, inputs: ResolvedInputs | None = None) -> PreparedRun:
    """Directories and spec.yaml, preflight (skipped when ``inputs`` were checked already), plan."""
    output_dir = Path(spec.output_dir).expanduser().resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    run_dir = output_dir / "runs" / spec.name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.yaml").write_text(dump_spec(spec))
    if inputs is None:
        out(f"== preflight: model {spec.model.name_or_path}, data {spec.data.local_dir or 'hub'}")
        inputs = preflight(spec)
    return PreparedRun(spec, output_dir, run_dir, inputs, build_plan(spec), resolve_tracking_uri(spec.tracking.uri, output_dir))


def open_tracker(run: PreparedRun) -> Tracker:
    """The run's MLflow store; runs are found or created under a lock in ``output_dir``, which
    every driver of the same spec shares."""
    artifact_root = run.output_dir / "mlartifacts" if run.tracking_uri.startswith("sqlite") else None
    return Tracker(run.tracking_uri, run.spec.tracking.experiment, artifact_root, lock_dir=run.output_dir)


def open_parent_run(tracker: Tracker, run: PreparedRun, tags: dict[str, str] | None = None) -> str:
    """The run's MLflow parent, found again by the spec's fingerprint on a rerun."""
    spec = run.spec
    parent = tracker.parent_run(spec.name, spec.fingerprint())
    tracker.log_params(parent, flatten(spec.model_dump(mode="json")))
    intermediate = ",".join(s.task for s in spec.intermediate) or "none"
    tracker.set_tags(parent, {"xit.target": spec.target.task, "xit.intermediate": intermediate, **(tags or {})})
    tracker.log_artifacts(parent, [run.run_dir / "spec.yaml"])
    return parent


def open_phase_run(tracker: Tracker, run: PreparedRun, parent: str, phase: Phase) -> str:
    """The phase's child run under ``parent``, found again by the phase hash."""
    tags = {"xit.phase_id": phase.id, "xit.kind": phase.kind, "xit.task": phase.task}
    child = tracker.child_run(parent, f"{phase.kind}:{phase.task}", phase.hash, tags)
    params = {"phase.task": phase.task, "phase.kind": phase.kind, "phase.init": run.init_dir(phase), **flatten(phase.training.model_dump(), "training.")}
    tracker.log_params(child, params)
    return child


def open_evaluation_run(tracker: Tracker, run: PreparedRun, parent: str, evaluation: EncoderEvaluation) -> str:
    """The child run of a target evaluated straight from an encoder (no training phase)."""
    tags = {"xit.phase_id": evaluation.id, "xit.kind": "evaluation", "xit.task": evaluation.task}
    child = tracker.child_run(parent, f"evaluation:{evaluation.task}", evaluation.hash, tags)
    params = {"evaluation.task": evaluation.task, "evaluation.encoder": run.init_dir(evaluation),
              "evaluation.max_seq_length": str(evaluation.training.max_seq_length)}
    tracker.log_params(child, params)
    return child


def train_phase(run: PreparedRun, phase: Phase, job: PhaseJob) -> PhaseOutcome:
    """``run_phase``, with a full disk said as the one error it is (Ray reports it as a worker
    failure whose OSError names no path): where the phase writes, and how much is free there."""
    from xit_dist.errors import DiskFullError, find_disk_full

    try:
        return run_phase(job, phase.saves, phase_dir(run.spec, phase), run.resources)
    except Exception as err:
        full = find_disk_full(err)
        if full is None:
            raise
        import shutil

        from xit_dist.plan.estimate import format_bytes

        where = full.filename or f"{run.storage}/{phase.id} (its checkpoints)"
        free = format_bytes(shutil.disk_usage(run.output_dir).free)
        raise DiskFullError(f"No space left on device writing {where}: output_dir {run.output_dir} has {free} free; "
                            "free space, then rerun the same command to resume from the last checkpoint") from err


def record_phase(tracker: Tracker, run: PreparedRun, phase: Phase, child: str) -> None:
    """The phase's record beside its child run, with the training metrics its rank 0 could not
    send (MLflow was down); an intermediate phase's run ends here, the target's when its
    evaluation is logged."""
    from xit_dist.train.metrics_sink import send_pending

    send_pending(tracker.client, child, phase_dir(run.spec, phase))
    tracker.log_artifacts(child, [phase_dir(run.spec, phase) / DONE_FILE])
    if phase.kind != "target":
        tracker.finish(child)


def log_results(tracker: Tracker, run: PreparedRun, parent: str, target_child: str, results: TaskResults) -> None:
    """Zero-shot results on the target phase's run and the parent; both runs end here. A run
    that holds them already (a rerun, or a second driver of the same spec) gets none again."""
    artifacts = results.write(run.run_dir)
    for run_id in (target_child, parent):
        tracker.log_new_metrics(run_id, results.mlflow_metrics())
        tracker.log_artifacts(run_id, artifacts, "results")
    tracker.finish(target_child)
    tracker.finish(parent)


def end_open_runs(tracker: Tracker, run_ids: list[str], status: str = "FAILED") -> None:
    """End the runs still RUNNING with ``status``. Never raises: this runs while another error
    (or Ctrl-C) is on its way to the user, and must not take its place. When the store cannot be
    written (it may sit on the disk that just filled up), one line says so."""
    from xit_dist.tracking.store import store_errors_unlogged

    def end_them() -> None:
        with store_errors_unlogged():
            for run_id in run_ids:
                if tracker.client.get_run(run_id).info.status == "RUNNING":
                    tracker.finish(run_id, status)

    try:
        try:
            end_them()
        except Exception:
            if not tracker.free_reserve():  # a full disk under a sqlite store: its reserve makes room
                raise
            end_them()
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        print(f"xit-dist: warning: could not mark the MLflow runs {status} ({type(err).__name__}: {first}); "
              "the rerun takes them over", file=sys.stderr)


@contextlib.contextmanager
def runs_end_on_error(tracker: Tracker, run_ids: Callable[[], list[str]]):
    """On an error the open runs end FAILED, on Ctrl-C KILLED; the error goes on unchanged."""
    try:
        yield
    except BaseException as err:
        end_open_runs(tracker, run_ids(), "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
        raise


def off_main_thread(work: Callable[[], object], name: str = "xit-run"):
    """``work()`` on a daemon thread, its result or error handed back. Ray Train V2 installs its
    own SIGINT handler when ``fit()`` is called on the main thread, which aborts the run and exits
    with status 1 before xit-dist sees Ctrl-C; off the main thread it installs none, so Ctrl-C
    arrives here as KeyboardInterrupt (the daemon thread dies with the process)."""
    outcome: dict[str, object] = {}

    def body() -> None:
        try:
            outcome["value"] = work()
        except BaseException as err:  # handed to the caller
            outcome["error"] = err

    thread = threading.Thread(target=body, name=name, daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def warn_if_disk_short(spec: ExperimentSpec, phases: list[Phase], output_dir: Path, out: Callable[[str], None]) -> None:
    """One warning line when output_dir has less free space than the phases still to train write."""
    from xit_dist.plan.disk_space import checkpoint_bytes, phase_bytes, shortage_warning
    from xit_dist.plan.view import base_model_size
    from xit_dist.train.phase import completed_record

    to_train = [p for p in phases if completed_record(phase_dir(spec, p)) is None]
    if not to_train:
        return
    params, bf16 = base_model_size(spec, to_train[0].task).total_params, spec.distributed.bf16
    need = sum(phase_bytes(params, bf16, bool(p.training.eval_every_n_steps)) for p in to_train)
    warning = shortage_warning(output_dir, need, len(to_train), checkpoint_bytes(params, bf16))
    if warning:
        out(warning)


def check_cluster(run: PreparedRun) -> None:
    """Connect to (or start) Ray, then refuse a cluster too small or without shared storage."""
    start_ray(run.spec.distributed.address)
    check_cluster_resources(run.spec)
    check_shared_storage(run.output_dir, cluster_hosts(), run.spec.distributed.assume_shared_storage)


def run_experiment(spec: ExperimentSpec, out: Callable[[str], None] = say) -> RunSummary:
    from xit_dist.console import quiet_third_party

    quiet_third_party()
    run = prepare_run(spec, out)
    tracker = open_tracker(run)
    warn_if_disk_short(spec, run.phases, run.output_dir, out)
    check_cluster(run)
    parent = open_parent_run(tracker, run)
    child_ids: dict[str, str] = {}
    with runs_end_on_error(tracker, lambda: [*child_ids.values(), parent]):
        outcomes, results = off_main_thread(lambda: train_and_evaluate(tracker, run, parent, child_ids, out))
    out("")
    out(results.table())
    out(f"\nresults: {run.run_dir}\nMLflow: {run.tracking_uri} (experiment {spec.tracking.experiment!r}, run {parent})")
    return RunSummary(run.run_dir, run.tracking_uri, parent, child_ids, outcomes, results)


def train_and_evaluate(tracker: Tracker, run: PreparedRun, parent: str, child_ids: dict[str, str],
                       out: Callable[[str], None]) -> tuple[list[PhaseOutcome], TaskResults]:
    """Each phase in order (reused when done), then the target's zero-shot evaluation, logged.
    ``child_ids`` fills as child runs open, for the caller to end them on an error."""
    spec = run.spec
    outcomes: list[PhaseOutcome] = []
    for phase in run.phases:
        child = child_ids[phase.id] = open_phase_run(tracker, run, parent, phase)
        init_dir = run.init_dir(phase)
        out(f"== phase {phase.index + 1}/{len(run.phases)} {phase.kind} {phase.task} [{phase.id}] from {init_dir}")
        outcome = train_phase(run, phase, phase_job(spec, phase, init_dir, run.inputs, run.tracking_uri, child))
        if outcome.reused:
            out(f"   already trained: reusing {outcome.output_dir}")
        record_phase(tracker, run, phase, child)
        outcomes.append(outcome)

    evaluation = encoder_evaluation(spec, run.phases)
    if evaluation is None:
        target_phase, target_outcome = run.phases[-1], outcomes[-1]
        results = evaluate_target(spec, target_phase, target_outcome, run.inputs, run.storage)
        target_child = child_ids[target_phase.id]
    else:
        target_child = child_ids[evaluation.id] = open_evaluation_run(tracker, run, parent, evaluation)
        out(f"== {evaluation.task}: no training phase; evaluating {evaluation.encoder}: {run.init_dir(evaluation)}")
        results = evaluate_encoder(spec, evaluation, run.init_dir(evaluation), run.inputs, run.storage)
    log_results(tracker, run, parent, target_child, results)
    return outcomes, results
