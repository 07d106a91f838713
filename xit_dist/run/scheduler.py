"""``xit-dist run GRID``: every distinct phase of a grid trained once, independent phases at the
same time, then each cell's evaluation and MLflow runs.

Scheduling is over distinct phases (``grid.shared_phases``), not cells: a phase starts when its
upstream phase is done and the cluster has room, so a phase two cells need is trained by one of
them while the other waits for it. Each phase is its own Ray Train ``TorchTrainer`` (its own
worker group), and its ``fit()`` runs in a driver thread: ``fit()`` only starts a controller
actor and waits on it, and Ray Train V2 supports calling it off the main thread (it skips its
SIGINT handler there, as it does under Tune). The threads are daemons so that an interrupted
driver exits at once; a rerun resumes from what is on disk.

MLflow: one parent run per cell (found again by the spec fingerprint, tagged with the grid and
the cell's axis labels) and one child per phase of the cell (found again by the phase hash). A
shared phase reports its live metrics to the child run of the cell that trained it; the other
cells' children carry ``xit.trained_in`` naming that cell. Only the main thread writes to
MLflow from the driver.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from xit_dist.errors import XitError
from xit_dist.evaluate.results import TaskResults
from xit_dist.plan.grid import Cell, Grid, SharedPhase, shared_phases
from xit_dist.console import say
from xit_dist.plan.phases import encoder_evaluation, phase_dir
from xit_dist.plan.preflight import ResolvedInputs, preflight
from xit_dist.run.session import (
    PreparedRun,
    check_cluster_resources,
    evaluate_encoder,
    end_open_runs,
    evaluate_target,
    log_results,
    open_evaluation_run,
    open_parent_run,
    open_phase_run,
    open_tracker,
    phase_job,
    prepare_run,
    record_phase,
    start_ray,
    train_phase,
    warn_if_disk_short,
)
from xit_dist.config.spec import ExperimentSpec
from xit_dist.run.storage import check_shared_storage, cluster_hosts
from xit_dist.train.phase import PhaseOutcome, completed_record, output_subdir

TRAINED_IN_TAG = "xit.trained_in"


class GridFailed(XitError):
    """Some phases or evaluations failed; the rest of the grid ran. Rerunning resumes."""

    exit_code = 1


@dataclass(frozen=True)
class Need:
    """What one worker group holds while it runs."""

    cpu: float
    gpu: float

    @classmethod
    def of(cls, spec: ExperimentSpec) -> "Need":
        d = spec.distributed
        return cls(d.num_workers * d.cpus_per_worker, d.num_workers if d.use_gpu else 0)


class Capacity:
    """Admission of worker groups. With ``max_jobs`` (``--max-concurrent-phases``) only the count
    is limited and Ray queues what does not fit (an autoscaling cluster grows for it); without,
    jobs start while the cluster's CPUs and GPUs, as Ray reports them at the start, can hold them."""

    def __init__(self, total: dict[str, float], max_jobs: int | None):
        self.cpu, self.gpu = total.get("CPU", 0.0), total.get("GPU", 0.0)
        self.max_jobs = max_jobs
        self.used_cpu = self.used_gpu = 0.0
        self.jobs = 0

    def admits(self, need: Need) -> bool:
        if self.max_jobs is not None:
            return self.jobs < self.max_jobs
        if self.jobs == 0:
            return True  # check_cluster_resources made sure one fits
        return self.used_cpu + need.cpu <= self.cpu + 1e-9 and self.used_gpu + need.gpu <= self.gpu + 1e-9

    def take(self, need: Need) -> None:
        self.jobs += 1
        self.used_cpu += need.cpu
        self.used_gpu += need.gpu

    def release(self, need: Need) -> None:
        self.jobs -= 1
        self.used_cpu -= need.cpu
        self.used_gpu -= need.gpu

    def describe(self) -> str:
        if self.max_jobs is not None:
            return f"at most {self.max_jobs} at once (--max-concurrent-phases)"
        return f"as many at once as {self.cpu:g} CPU / {self.gpu:g} GPU hold"


@dataclass
class CellRun:
    cell: Cell
    run: PreparedRun
    parent: str = ""
    children: dict[str, str] = field(default_factory=dict)  # phase hash / evaluation id -> MLflow run id
    results: TaskResults | None = None
    failure: str | None = None


@dataclass
class GridSummary:
    grid: Grid
    tracking_uri: str
    cells: list[CellRun]
    trained: list[str]          # phase ids trained by this invocation
    reused: list[str]           # phase ids found done on disk
    failed: list[str]           # phase ids that failed or could not start (upstream failed)
    peak_running: int           # most worker groups at once
    events: list[tuple[float, str, str]]  # (seconds since start, "start" | "end", job)


def _preflight_key(spec: ExperimentSpec) -> str:
    """Cells that read the same model and data share one preflight (stage training settings do
    not change what it checks)."""
    stages = [s.model_dump(mode="json", exclude={"training"}) for s in [*spec.intermediate, spec.target]]
    return json.dumps([spec.model.model_dump(mode="json"), spec.data.model_dump(mode="json"),
                       spec.evaluation.model_dump(mode="json"), stages], sort_keys=True)


def prepare_cells(grid: Grid, out: Callable[[str], None]) -> list[CellRun]:
    checked: dict[str, ResolvedInputs] = {}
    runs = []
    for cell in grid.cells:
        key = _preflight_key(cell.spec)
        if key not in checked:
            out(f"== preflight: model {cell.spec.model.name_or_path}, data {cell.spec.data.local_dir or 'hub'}, "
                f"tasks {', '.join(s.task for s in [*cell.spec.intermediate, cell.spec.target])}")
            try:
                checked[key] = preflight(cell.spec)
            except XitError as err:  # same one line, saying which cell needs the missing piece
                raise type(err)(f"cell {cell.name}: {err}") from None
        runs.append(CellRun(cell, prepare_run(cell.spec, out, inputs=checked[key])))
    return runs


def check_grid_cluster(cells: list[CellRun]) -> None:
    """Ray up, every distinct worker-group shape fits the cluster, storage shared across nodes."""
    first = cells[0].run
    start_ray(first.spec.distributed.address)
    for spec in {json.dumps(c.run.spec.distributed.model_dump(mode="json")): c.run.spec for c in cells}.values():
        check_cluster_resources(spec)
    check_shared_storage(first.output_dir, cluster_hosts(), first.spec.distributed.assume_shared_storage)


class _Threads:
    """Daemon threads whose results come back on one queue, read by the main thread."""

    def __init__(self):
        self.finished: queue.Queue = queue.Queue()
        self.running: dict[str, Need] = {}

    def start(self, key: str, need: Need, work: Callable[[], Any]) -> None:
        self.running[key] = need

        def body() -> None:
            try:
                self.finished.put((key, work(), None))
            except BaseException as err:  # handed to the main thread, which decides
                self.finished.put((key, None, err))

        threading.Thread(target=body, name=f"xit-{key}", daemon=True).start()

    def next(self) -> tuple[str, Need, Any, BaseException | None]:
        key, value, error = self.finished.get()
        return key, self.running.pop(key), value, error


def run_grid(grid: Grid, max_concurrent: int | None = None, out: Callable[[str], None] = say) -> GridSummary:
    from xit_dist.console import quiet_third_party

    if max_concurrent is not None and max_concurrent < 1:
        raise XitError(f"--max-concurrent-phases: must be at least 1 (got {max_concurrent})")
    quiet_third_party()
    cells = prepare_cells(grid, out)
    tracker = open_tracker(cells[0].run)
    first = cells[0].run
    warn_if_disk_short(first.spec, [sp.phase for sp in shared_phases(grid.cells)], first.output_dir, out)
    check_grid_cluster(cells)
    import ray

    return _Scheduler(grid, cells, tracker, Capacity(ray.cluster_resources(), max_concurrent), out).run()


class _Scheduler:
    def __init__(self, grid: Grid, cells: list[CellRun], tracker, capacity: Capacity, out: Callable[[str], None]):
        self.grid, self.cells, self.tracker, self.capacity, self.out = grid, cells, tracker, capacity, out
        self.by_cell = {c.cell.name: c for c in cells}
        # Phases many cells wait for (intermediate phases) go first; grid order otherwise.
        self.pending = sorted(shared_phases(grid.cells), key=lambda sp: -len(sp.cells))
        self.started: dict[str, SharedPhase] = {}
        self.outcomes: dict[str, PhaseOutcome] = {}
        self.failed: dict[str, str] = {}
        self.waiting_evaluation: list[CellRun] = [c for c in cells if not c.run.phases]  # no phase at all: evaluate at once
        self.threads = _Threads()
        self.trained: list[str] = []
        self.reused: list[str] = []
        self.peak = 0
        self.events: list[tuple[float, str, str]] = []
        self.t0 = time.monotonic()

    # ------------------------------------------------------------------ main loop
    def run(self) -> GridSummary:
        to_train = sum(1 for sp in self.pending if completed_record(self._dir(sp)) is None)
        self.out(f"== grid {self.grid.name}: {len(self.cells)} cells ({self.grid.shape()}), {len(self.pending)} distinct phases, "
                 f"{to_train} to train; {self.capacity.describe()}")
        for cell_run in self.cells:
            cell_run.parent = open_parent_run(self.tracker, cell_run.run, cell_run.cell.tags)
        try:
            while True:
                self._start_what_can_start()
                if not self.threads.running:
                    break
                key, need, value, error = self.threads.next()
                self.capacity.release(need)
                self.events.append((time.monotonic() - self.t0, "end", key))
                if key.startswith("eval:"):
                    self._evaluation_finished(self.by_cell[key[len("eval:"):]], value, error)
                else:
                    self._phase_finished(self.started[key], value, error)
        except BaseException as err:  # Ctrl-C: the runs end KILLED; an error: FAILED
            status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
            end_open_runs(self.tracker, [i for c in self.cells for i in (*c.children.values(), c.parent) if i], status)
            raise
        return self._summary()

    def _start_what_can_start(self) -> None:
        """Phases already on disk (or blocked by a failed upstream) first, without resources; then
        evaluations (mostly cached: the target phase evaluated on its workers), then phases."""
        while self._settle_without_training():
            pass
        for cell_run in list(self.waiting_evaluation):
            if self._admit(Need.of(cell_run.run.spec)):
                self.waiting_evaluation.remove(cell_run)
                self._start_evaluation(cell_run)
        for sp in list(self.pending):
            if self._ready(sp) and self._admit(Need.of(sp.cells[0].spec)):
                self.pending.remove(sp)
                self._start_phase(sp)

    def _ready(self, sp: SharedPhase) -> bool:
        return sp.phase.upstream is None or sp.phase.upstream.hash in self.outcomes

    def _settle_without_training(self) -> bool:
        progressed = False
        for sp in list(self.pending):
            upstream = sp.phase.upstream
            if upstream is not None and upstream.hash in self.failed:
                self.pending.remove(sp)
                self._fail_phase(sp, f"upstream phase {upstream.id} failed")
                progressed = True
            elif self._ready(sp):
                record = completed_record(self._dir(sp))
                if record is not None:
                    self.pending.remove(sp)
                    self.reused.append(sp.phase.id)
                    self._phase_finished(sp, PhaseOutcome(record, output_subdir(self._dir(sp), sp.phase.saves), reused=True), None)
                    progressed = True
        return progressed

    def _admit(self, need: Need) -> bool:
        if not self.capacity.admits(need):
            return False
        self.capacity.take(need)
        self.peak = max(self.peak, self.capacity.jobs)
        return True

    def _dir(self, sp: SharedPhase):
        return phase_dir(sp.cells[0].spec, sp.phase)

    # ------------------------------------------------------------------ phases
    def _start_phase(self, sp: SharedPhase) -> None:
        owner = self.by_cell[sp.cells[0].name]
        phase, run = sp.phase_of(owner.cell), owner.run
        child = owner.children[sp.hash] = open_phase_run(self.tracker, run, owner.parent, phase)
        init_dir = run.init_dir(phase)
        job = phase_job(run.spec, phase, init_dir, run.inputs, run.tracking_uri, child)
        self.started[sp.hash] = sp
        self.events.append((time.monotonic() - self.t0, "start", sp.hash))
        self.out(f"== start {phase.kind} {phase.task} [{phase.id}] from {init_dir}, for {len(sp.cells)} cell(s); "
                 f"{self.capacity.jobs} worker group(s) running")
        self.threads.start(sp.hash, Need.of(run.spec), lambda: train_phase(run, phase, job))

    def _phase_finished(self, sp: SharedPhase, outcome: PhaseOutcome | None, error: BaseException | None) -> None:
        if error is not None:
            self.out(f"== FAILED {sp.phase.kind} {sp.phase.task} [{sp.phase.id}]: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
            self._fail_phase(sp, f"phase {sp.phase.id} failed: {type(error).__name__}")
            return
        self.outcomes[sp.hash] = outcome
        if not outcome.reused:
            self.trained.append(sp.phase.id)
            self.out(f"== done {sp.phase.kind} {sp.phase.task} [{sp.phase.id}]")
        owner = sp.cells[0].name
        for cell in sp.cells:
            cell_run = self.by_cell[cell.name]
            if cell_run.failure:
                continue
            phase = sp.phase_of(cell)
            child = cell_run.children.get(sp.hash) or open_phase_run(self.tracker, cell_run.run, cell_run.parent, phase)
            cell_run.children[sp.hash] = child
            if cell.name != owner:  # the owner (first cell needing it, in grid order) trains it in every invocation
                self.tracker.set_tags(child, {TRAINED_IN_TAG: owner})
            record_phase(self.tracker, cell_run.run, phase, child)
            if phase.hash == cell_run.run.phases[-1].hash:
                self.waiting_evaluation.append(cell_run)

    def _fail_phase(self, sp: SharedPhase, reason: str) -> None:
        self.failed[sp.hash] = reason
        for cell in sp.cells:
            self._fail_cell(self.by_cell[cell.name], reason)

    def _fail_cell(self, cell_run: CellRun, reason: str) -> None:
        if cell_run.failure is None:
            cell_run.failure = reason
            end_open_runs(self.tracker, [*cell_run.children.values(), cell_run.parent])

    # ------------------------------------------------------------------ evaluation
    def _start_evaluation(self, cell_run: CellRun) -> None:
        run = cell_run.run
        spec, inputs, storage = run.spec, run.inputs, run.storage
        evaluation = encoder_evaluation(spec, run.phases)
        if evaluation is None:
            phase = run.phases[-1]
            outcome = self.outcomes[phase.hash]
            work = lambda: evaluate_target(spec, phase, outcome, inputs, storage)  # noqa: E731
        else:
            cell_run.children[evaluation.id] = open_evaluation_run(self.tracker, run, cell_run.parent, evaluation)
            model_dir = run.init_dir(evaluation)
            work = lambda: evaluate_encoder(spec, evaluation, model_dir, inputs, storage)  # noqa: E731
        self.events.append((time.monotonic() - self.t0, "start", f"eval:{cell_run.cell.name}"))
        self.threads.start(f"eval:{cell_run.cell.name}", Need.of(spec), work)

    def _evaluation_finished(self, cell_run: CellRun, results: TaskResults | None, error: BaseException | None) -> None:
        if error is not None:
            self.out(f"== FAILED evaluation of {cell_run.cell.name}: {type(error).__name__}: {error}")
            self._fail_cell(cell_run, f"evaluation failed: {type(error).__name__}")
            return
        run = cell_run.run
        evaluation = encoder_evaluation(run.spec, run.phases)
        child = cell_run.children[evaluation.id if evaluation else run.phases[-1].hash]
        log_results(self.tracker, run, cell_run.parent, child, results)
        cell_run.results = results
        primary = results.primary_metric
        self.out(f"== {cell_run.cell.name}: {results.task} {primary} avg {sum(results.column(primary).values()) / len(results.per_language):.2f}")

    # ------------------------------------------------------------------ end
    def _summary(self) -> GridSummary:
        ids = {sp.hash: sp.phase.id for sp in shared_phases(self.grid.cells)}
        failed = [ids[h] for h in self.failed]
        summary = GridSummary(self.grid, self.cells[0].run.tracking_uri, self.cells, self.trained, self.reused, failed, self.peak, self.events)
        unfinished = [c for c in self.cells if c.results is None]
        self.out(f"== grid {self.grid.name}: {len(self.cells) - len(unfinished)}/{len(self.cells)} cells finished; "
                 f"trained {len(self.trained)} phase(s), reused {len(self.reused)}; at most {self.peak} worker group(s) at once\n"
                 f"MLflow: {summary.tracking_uri} (experiment {self.cells[0].run.spec.tracking.experiment!r}, tag xit.grid = {self.grid.name!r})")
        if unfinished:
            reasons = sorted({c.failure or "not run" for c in unfinished})
            raise GridFailed(f"grid {self.grid.name}: {len(unfinished)} cell(s) unfinished ({'; '.join(reasons)}); rerun the same command to resume")
        return summary
