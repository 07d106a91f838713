"""The one setup every run goes through before its phases start (``xit-dist run SPEC``, ``run
GRID``, the job ``xit-dist submit`` starts, which runs the same command, and a search's trials):
preflight (once for the runs that read the same model and data), each run's directories and
plan, the MLflow store, the free-space warning, Ray and its checks; and the resources every
phase of a run trains with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from xit_dist.config.load import dump_spec
from xit_dist.config.spec import ExperimentSpec
from xit_dist.console import say
from xit_dist.errors import XitError
from xit_dist.config import layout
from xit_dist.config.layout import phase_dir
from xit_dist.plan.phases import EncoderEvaluation, Phase, build_plan
from xit_dist.plan.preflight import ResolvedInputs, preflight
from xit_dist.tracking.object_files import shared_location, write_kept_text
from xit_dist.tracking.store import DEFAULT_STORE_FILE, Tracker, resolve_tracking_uri
from xit_dist.train.job import PhaseJob
from xit_dist.train.phase import PhaseOutcome, PhaseResources, output_subdir, run_phase


@dataclass
class PreparedRun:
    """One spec made ready to run: its directories, checked inputs, phases and MLflow store.
    A grid prepares one per cell; the scheduler runs their phases."""

    spec: ExperimentSpec
    output_dir: Path
    run_dir: Path           # the run's spec.yaml and results
    inputs: ResolvedInputs
    phases: list[Phase]
    tracking_uri: str

    @property
    def storage(self) -> str:
        """Ray Train's storage path: checkpoints of every phase, on the storage every node reads."""
        return layout.ray_storage(self.spec.output_dir)

    @property
    def resources(self) -> PhaseResources:
        """What each phase of the run trains with (the only place they are built)."""
        d = self.spec.distributed
        return PhaseResources(d.num_workers, d.use_gpu, d.cpus_per_worker, d.max_failures, self.storage)

    def init_dir(self, phase: Phase | EncoderEvaluation) -> str:
        """Where a phase starts (the encoder an encoder evaluation reads): its upstream phase's
        saved encoder, or the pretrained model."""
        if phase.upstream is None:
            return self.inputs.model_dir
        return shared_location(output_subdir(phase_dir(self.spec, phase.upstream), phase.upstream.saves))


def prepared_run(spec: ExperimentSpec, inputs: ResolvedInputs, tracking_uri: str | None = None) -> PreparedRun:
    """``spec`` planned against checked inputs; nothing is written (a search trial's run)."""
    output_dir = layout.output_root(spec.output_dir)
    uri = tracking_uri or resolve_tracking_uri(spec.tracking.uri, output_dir)
    return PreparedRun(spec, output_dir, layout.run_dir(spec), inputs, build_plan(spec), uri)


def _preflight_key(spec: ExperimentSpec) -> str:
    """Runs that read the same model and data share one preflight (stage training settings do
    not change what it checks)."""
    stages = [s.model_dump(mode="json", exclude={"training"}) for s in [*spec.intermediate, spec.target]]
    return json.dumps([spec.model.model_dump(mode="json"), spec.data.model_dump(mode="json"),
                       spec.evaluation.model_dump(mode="json"), stages], sort_keys=True)


def _checked_inputs(spec: ExperimentSpec, cell: str | None, out: Callable[[str], None]) -> ResolvedInputs:
    """Preflight, announced in one line; a grid's line names the tasks, and its errors the cell."""
    line = f"== preflight: model {spec.model.name_or_path}, data {spec.data.local_dir or 'hub'}"
    if cell is None:
        out(line)
        return preflight(spec)
    out(f"{line}, tasks {', '.join(s.task for s in [*spec.intermediate, spec.target])}")
    try:
        return preflight(spec)
    except XitError as err:  # same one line, saying which cell needs the missing piece
        raise type(err)(f"cell {cell}: {err}") from None


def prepare_runs(specs: list[ExperimentSpec], cells: list[str] | None, out: Callable[[str], None]) -> list[PreparedRun]:
    """Each spec preflighted (once per model and data), planned, its run directory and
    spec.yaml written. ``cells``: a grid's cell names, None for a plain spec."""
    checked: dict[str, ResolvedInputs] = {}
    runs = []
    for i, spec in enumerate(specs):
        key = _preflight_key(spec)
        if key not in checked:
            checked[key] = _checked_inputs(spec, cells[i] if cells else None, out)
        run = prepared_run(spec, checked[key])
        write_kept_text(layout.spec_copy(run.run_dir), dump_spec(spec))
        runs.append(run)
    return runs


def open_tracker(tracking_uri: str, experiment: str, output_dir: str | Path, lock_dir: Path | None = None) -> Tracker:
    """The MLflow store of runs under ``output_dir``, the only place one is opened (an sqlite
    store keeps its artifacts there: ``layout.artifact_root``). Runs are found or created under
    a lock in ``lock_dir``, which every driver of the same spec shares (default: beside the store)."""
    return Tracker(tracking_uri, experiment, layout.artifact_root(output_dir, tracking_uri), lock_dir=lock_dir)


def check_buckets(specs: list[ExperimentSpec]) -> None:
    """Each bucket ``output_dir`` usable (reachable, credentials taken, may write), before
    anything is written there or Ray starts."""
    from xit_dist.run.object_store import check_output_store

    for output_dir in dict.fromkeys(spec.output_dir for spec in specs):
        if layout.in_bucket(output_dir):
            check_output_store(output_dir)


def bucket_store_copy(output_dir: str, tracking_uri: str) -> tuple[Path, str] | None:
    """(the driver's sqlite file, its copy in the bucket) when output_dir is a bucket and the
    store is the default sqlite in the driver's mirror of it; else None."""
    database = layout.output_root(output_dir) / DEFAULT_STORE_FILE
    if not layout.in_bucket(output_dir) or tracking_uri != f"sqlite:///{database.resolve()}":
        return None
    return database, shared_location(database)


def restore_tracking_store(output_dir: str, tracking_uri: str, out: Callable[[str], None]) -> None:
    """A driver on a machine without the store (a new head node, another machine) starts from
    the copy the last driver left in the bucket, so runs are found again, not duplicated."""
    pair = bucket_store_copy(output_dir, tracking_uri)
    if pair is None or pair[0].exists():
        return
    from xit_dist.tracking.object_files import fetch_kept_file

    if fetch_kept_file(pair[0]):
        out(f"== MLflow store restored from {pair[1]}")


def keep_tracking_store(output_dir: str, tracking_uri: str) -> None:
    """The driver's sqlite store copied to the bucket (a consistent snapshot, by sqlite's
    backup), after every run: what is in the bucket outlives the driver's machine."""
    pair = bucket_store_copy(output_dir, tracking_uri)
    if pair is None or not pair[0].exists():
        return
    import sqlite3
    import tempfile

    from xit_dist.tracking.object_files import upload_file

    with tempfile.TemporaryDirectory(prefix="xit-store-") as tmp:
        snapshot = Path(tmp) / DEFAULT_STORE_FILE
        with sqlite3.connect(pair[0]) as source, sqlite3.connect(snapshot) as copy:
            source.backup(copy)
        upload_file(snapshot, pair[1])


def check_store_reaches_workers(run: PreparedRun) -> None:
    """Workers log their metrics to the MLflow store themselves. With output_dir in a bucket, a
    sqlite store is a file on the driver's machine that workers on other machines cannot reach
    (each would write a store of its own): refused on a multi-machine cluster."""
    from xit_dist.run.storage import cluster_hosts

    if layout.in_bucket(run.spec.output_dir) and run.tracking_uri.startswith("sqlite") and len(hosts := cluster_hosts()) > 1:
        raise XitError(
            f"tracking.uri {run.tracking_uri}: a sqlite store on the driver's machine, but output_dir is a bucket and the cluster "
            f"spans {len(hosts)} machines whose workers log to the store; run an MLflow server (cluster/README.md) and set tracking.uri"
        )


def warn_if_disk_short(spec: ExperimentSpec, phases: list[Phase], output_dir: Path, out: Callable[[str], None]) -> None:
    """One warning line when output_dir has less free space than the phases still to train write."""
    from xit_dist.plan.disk_space import checkpoint_bytes, phase_bytes, shortage_warning
    from xit_dist.plan.view import base_model_size
    from xit_dist.train.phase import completed_record

    if layout.in_bucket(spec.output_dir):
        return  # a bucket: no free space to speak of
    to_train = [p for p in phases if completed_record(phase_dir(spec, p)) is None]
    if not to_train:
        return
    params, bf16 = base_model_size(spec, to_train[0].task).total_params, spec.distributed.bf16
    need = sum(phase_bytes(params, bf16, bool(p.training.eval_every_n_steps)) for p in to_train)
    warning = shortage_warning(output_dir, need, len(to_train), checkpoint_bytes(params, bf16))
    if warning:
        out(warning)


def distinct_phases(runs: list[PreparedRun]) -> list[Phase]:
    """Each phase of ``runs`` once (by hash), upstream before downstream."""
    found: dict[str, Phase] = {}
    for run in runs:
        for phase in run.phases:
            found.setdefault(phase.hash, phase)
    return list(found.values())


@dataclass
class Session:
    """Runs ready to schedule: planned, their store open, the cluster up and checked."""

    runs: list[PreparedRun]
    tracker: Tracker


def open_session(specs: list[ExperimentSpec], cells: list[str] | None = None, out: Callable[[str], None] = say) -> Session:
    """The one setup of ``xit-dist run`` (a spec, or a grid's ``cells``), in this order: what a
    user can get wrong fails before Ray starts, and no MLflow run opens before the cluster fits."""
    from xit_dist.console import quiet_third_party
    from xit_dist.run.ray_cluster import connect_cluster

    quiet_third_party()
    check_buckets(specs)
    runs = prepare_runs(specs, cells, out)
    first = runs[0]
    restore_tracking_store(first.spec.output_dir, first.tracking_uri, out)
    tracker = open_tracker(first.tracking_uri, first.spec.tracking.experiment, first.spec.output_dir, lock_dir=first.output_dir)
    warn_if_disk_short(first.spec, distinct_phases(runs), first.output_dir, out)
    connect_cluster([run.spec for run in runs], first.output_dir)
    check_store_reaches_workers(first)
    return Session(runs, tracker)


def train_phase(run: PreparedRun, phase: Phase, job: PhaseJob, callbacks: tuple = ()) -> PhaseOutcome:
    """``run_phase`` with the run's resources, with a full disk said as the one error it is (Ray
    reports it as a worker failure whose OSError names no path): where the phase writes, and how
    much is free there."""
    from xit_dist.errors import DiskFullError, find_disk_full

    try:
        return run_phase(job, phase.saves, phase_dir(run.spec, phase), run.resources, callbacks)
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
