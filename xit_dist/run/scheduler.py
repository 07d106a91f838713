"""The one scheduler of ``xit-dist run``: every distinct phase of a grid trained once,
independent phases at the same time, then each cell's evaluation and MLflow runs. A single spec
runs as a one-cell grid through the same scheduler, told as a single run (``SpecStyle``).

Scheduling is over distinct phases (``grid.shared_phases``), not cells: a phase starts when its
upstream phase is done and the cluster has room, so a phase two cells need is trained by one of
them while the other waits for it. Each phase is its own Ray Train ``TorchTrainer`` (its own
worker group), and its ``fit()`` runs in a driver thread: ``fit()`` only starts a controller
actor and waits on it, and Ray Train V2 supports calling it off the main thread (it skips its
SIGINT handler there, as it does under Tune, so Ctrl-C reaches the main thread as
KeyboardInterrupt). The threads are daemons so that an interrupted driver exits at once; a rerun
resumes from what is on disk.

MLflow: one parent run per cell (found again by the spec fingerprint, tagged with the grid and
the cell's axis labels) and one child per phase of the cell (found again by the phase hash). A
shared phase reports its live metrics to the child run of the cell that trained it; the other
cells' children carry ``xit.trained_in`` naming that cell. Only the main thread writes to
MLflow from the driver.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from xit_dist.config.spec import ExperimentSpec
from xit_dist.console import say
from xit_dist.errors import GridFailed, XitError
from xit_dist.evaluate.results import TaskResults
from xit_dist.plan.grid import Cell, Grid, SharedPhase, shared_phases
from xit_dist.config.layout import phase_dir
from xit_dist.plan.phases import EncoderEvaluation, Phase, encoder_evaluation
from xit_dist.run.evaluation import evaluate_encoder, evaluate_target
from xit_dist.run.jobs import phase_job
from xit_dist.run.runs import (
    end_open_runs, log_results, mark_trained_in, open_evaluation_run, open_parent_run, open_phase_run, record_phase,
)
from xit_dist.run.session import PreparedRun, Session, keep_tracking_store, open_session, train_phase
from xit_dist.tracking.object_files import shared_location
from xit_dist.tracking.tags import GRID_TAG
from xit_dist.train.phase import PhaseOutcome, completed_record, output_subdir


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
            return True  # connect_cluster made sure one fits
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

    @property
    def evaluation(self) -> EncoderEvaluation | None:
        """The target evaluated straight from an encoder, or None when the target trains."""
        return encoder_evaluation(self.run.spec, self.run.phases)

    @property
    def target_child(self) -> str:
        """The child run the zero-shot results go to."""
        evaluation = self.evaluation
        return self.children[evaluation.id if evaluation else self.run.phases[-1].hash]


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


@dataclass
class RunSummary:
    """What ``xit-dist run SPEC`` did: the run's directory, its MLflow runs, phases and results."""

    run_dir: Path
    tracking_uri: str
    parent_run_id: str
    phase_run_ids: dict[str, str]  # phase id / evaluation id -> MLflow run id
    phases: list[PhaseOutcome]
    results: TaskResults


# ---------------------------------------------------------------------------------- entry points


def run_grid(grid: Grid, max_concurrent: int | None = None, out: Callable[[str], None] = say) -> GridSummary:
    """``xit-dist run GRID``: every cell's phases, shared ones once; GridFailed when a cell did not finish."""
    if max_concurrent is not None and max_concurrent < 1:
        raise XitError(f"--max-concurrent-phases: must be at least 1 (got {max_concurrent})")
    session = open_session([cell.spec for cell in grid.cells], [cell.name for cell in grid.cells], out)
    return schedule(session, grid, max_concurrent, GridStyle(out))


def run_experiment(spec: ExperimentSpec, out: Callable[[str], None] = say) -> RunSummary:
    """``xit-dist run SPEC``: the spec as a one-cell grid; a failure is raised as itself."""
    session = open_session([spec], None, out)
    cell = Cell(spec.name, spec, {}, spec.name, None, 1, 0)
    return schedule(session, Grid(spec.name, None, "", [], [cell]), None, SpecStyle(out))


def schedule(session: Session, grid: Grid, max_concurrent: int | None, style: "Style"):
    """The cells' phases and evaluations on the session's cluster, as ``style`` tells them."""
    import ray

    cells = [CellRun(cell, run) for cell, run in zip(grid.cells, session.runs)]
    capacity = Capacity(ray.cluster_resources(), max_concurrent)
    try:
        return Scheduler(grid, cells, session.tracker, capacity, style).run()
    finally:
        keep_tracking_store(session.runs[0].spec.output_dir, session.runs[0].tracking_uri)


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


# ---------------------------------------------------------------------------------- scheduler


class Scheduler:
    """Distinct phases of the cells, each started when its upstream is done and there is room;
    each cell's evaluation once its last phase is. ``style`` says what the user sees and whether
    a failure ends the whole run or only its cells."""

    def __init__(self, grid: Grid, cells: list[CellRun], tracker, capacity: Capacity, style: "Style"):
        self.grid, self.cells, self.tracker, self.capacity, self.style = grid, cells, tracker, capacity, style
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
    def run(self):
        self.style.begin(self)
        for cell_run in self.cells:
            cell_run.parent = open_parent_run(self.tracker, cell_run.run, self.style.parent_tags(cell_run.cell))
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
        return self.style.end(self)

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
                record = completed_record(self.phase_dir_of(sp))
                if record is not None:
                    self.pending.remove(sp)
                    self.reused.append(sp.phase.id)
                    owner = self.by_cell[sp.cells[0].name].run
                    self.style.phase_found_done(owner, sp.phase)
                    self._phase_finished(sp, PhaseOutcome(record, output_subdir(self.phase_dir_of(sp), sp.phase.saves), reused=True), None)
                    progressed = True
        return progressed

    def _admit(self, need: Need) -> bool:
        if not self.capacity.admits(need):
            return False
        self.capacity.take(need)
        self.peak = max(self.peak, self.capacity.jobs)
        return True

    def phase_dir_of(self, sp: SharedPhase) -> Path:
        return phase_dir(sp.cells[0].spec, sp.phase)

    # ------------------------------------------------------------------ phases
    def _start_phase(self, sp: SharedPhase) -> None:
        owner = self.by_cell[sp.cells[0].name]
        phase, run = sp.phase_of(owner.cell), owner.run
        child = owner.children[sp.hash] = open_phase_run(self.tracker, run, owner.parent, phase)
        job = phase_job(run.spec, phase, run.init_dir(phase), run.inputs, run.tracking_uri, child)
        self.started[sp.hash] = sp
        self.events.append((time.monotonic() - self.t0, "start", sp.hash))
        self.style.phase_started(run, phase, len(sp.cells), self.capacity.jobs)
        self.threads.start(sp.hash, Need.of(run.spec), lambda: train_phase(run, phase, job))

    def _phase_finished(self, sp: SharedPhase, outcome: PhaseOutcome | None, error: BaseException | None) -> None:
        if error is not None:
            self.style.phase_failed(sp.phase, error)
            self._fail_phase(sp, f"phase {sp.phase.id} failed: {type(error).__name__}")
            return
        self.outcomes[sp.hash] = outcome
        if not outcome.reused:
            self.trained.append(sp.phase.id)
        self.style.phase_finished(sp.phase, outcome)
        owner = sp.cells[0].name
        for cell in sp.cells:
            cell_run = self.by_cell[cell.name]
            if cell_run.failure:
                continue
            phase = sp.phase_of(cell)
            child = cell_run.children.get(sp.hash) or open_phase_run(self.tracker, cell_run.run, cell_run.parent, phase)
            cell_run.children[sp.hash] = child
            if cell.name != owner:  # the owner (first cell needing it, in grid order) trains it in every invocation
                mark_trained_in(self.tracker, child, owner)
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
        evaluation = cell_run.evaluation
        if evaluation is None:
            phase = run.phases[-1]
            outcome = self.outcomes[phase.hash]
            work = lambda: evaluate_target(spec, phase, outcome, inputs, storage)  # noqa: E731
        else:
            cell_run.children[evaluation.id] = open_evaluation_run(self.tracker, run, cell_run.parent, evaluation)
            model_dir = run.init_dir(evaluation)
            self.style.encoder_evaluation_started(evaluation, model_dir)
            work = lambda: evaluate_encoder(spec, evaluation, model_dir, inputs, storage)  # noqa: E731
        self.events.append((time.monotonic() - self.t0, "start", f"eval:{cell_run.cell.name}"))
        self.threads.start(f"eval:{cell_run.cell.name}", Need.of(spec), work)

    def _evaluation_finished(self, cell_run: CellRun, results: TaskResults | None, error: BaseException | None) -> None:
        if error is not None:
            self.style.evaluation_failed(cell_run, error)
            self._fail_cell(cell_run, f"evaluation failed: {type(error).__name__}")
            return
        log_results(self.tracker, cell_run.run, cell_run.parent, cell_run.target_child, results)
        cell_run.results = results
        self.style.evaluation_finished(cell_run, results)


# ---------------------------------------------------------------------------------- what the user sees


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else ""


class Style:
    """What the user sees of a scheduled run, and what a failure ends: the scheduler calls these
    at each event; each says nothing unless a subclass says otherwise."""

    def __init__(self, out: Callable[[str], None]):
        self.out = out

    def parent_tags(self, cell: Cell) -> dict[str, str] | None:
        return None

    def begin(self, s: Scheduler) -> None:
        pass

    def phase_found_done(self, run: PreparedRun, phase: Phase) -> None:
        pass

    def phase_started(self, run: PreparedRun, phase: Phase, cells: int, running: int) -> None:
        pass

    def phase_finished(self, phase: Phase, outcome: PhaseOutcome) -> None:
        pass

    def phase_failed(self, phase: Phase, error: BaseException) -> None:
        pass

    def encoder_evaluation_started(self, evaluation: EncoderEvaluation, model_dir: str) -> None:
        pass

    def evaluation_failed(self, cell_run: CellRun, error: BaseException) -> None:
        pass

    def evaluation_finished(self, cell_run: CellRun, results: TaskResults) -> None:
        pass

    def end(self, s: Scheduler):
        raise NotImplementedError


class GridStyle(Style):
    """A grid as the user sees it: a line per phase started, done or failed and per cell
    evaluated; a failure ends only the cells it touches, the rest of the grid runs on."""

    def parent_tags(self, cell: Cell) -> dict[str, str] | None:
        return cell.tags

    def begin(self, s: Scheduler) -> None:
        to_train = sum(1 for sp in s.pending if completed_record(s.phase_dir_of(sp)) is None)
        self.out(f"== grid {s.grid.name}: {len(s.cells)} cells ({s.grid.shape()}), {len(s.pending)} distinct phases, "
                 f"{to_train} to train; {s.capacity.describe()}")

    def phase_started(self, run: PreparedRun, phase: Phase, cells: int, running: int) -> None:
        self.out(f"== start {phase.kind} {phase.task} [{phase.id}] from {run.init_dir(phase)}, for {cells} cell(s); "
                 f"{running} worker group(s) running")

    def phase_finished(self, phase: Phase, outcome: PhaseOutcome) -> None:
        if not outcome.reused:
            self.out(f"== done {phase.kind} {phase.task} [{phase.id}]")

    def phase_failed(self, phase: Phase, error: BaseException) -> None:
        self.out(f"== FAILED {phase.kind} {phase.task} [{phase.id}]: {type(error).__name__}: {_first_line(error)}")

    def evaluation_failed(self, cell_run: CellRun, error: BaseException) -> None:
        self.out(f"== FAILED evaluation of {cell_run.cell.name}: {type(error).__name__}: {error}")

    def evaluation_finished(self, cell_run: CellRun, results: TaskResults) -> None:
        primary = results.primary_metric
        average = sum(results.column(primary).values()) / len(results.per_language)
        self.out(f"== {cell_run.cell.name}: {results.task} {primary} avg {average:.2f}")

    def end(self, s: Scheduler) -> GridSummary:
        """The grid's closing lines; GridFailed (exit 1) when a cell did not finish."""
        ids = {sp.hash: sp.phase.id for sp in shared_phases(s.grid.cells)}
        failed = [ids[h] for h in s.failed]
        summary = GridSummary(s.grid, s.cells[0].run.tracking_uri, s.cells, s.trained, s.reused, failed, s.peak, s.events)
        unfinished = [c for c in s.cells if c.results is None]
        self.out(f"== grid {s.grid.name}: {len(s.cells) - len(unfinished)}/{len(s.cells)} cells finished; "
                 f"trained {len(s.trained)} phase(s), reused {len(s.reused)}; at most {s.peak} worker group(s) at once\n"
                 f"MLflow: {summary.tracking_uri} (experiment {s.cells[0].run.spec.tracking.experiment!r}, tag {GRID_TAG} = {s.grid.name!r})")
        if unfinished:
            reasons = sorted({c.failure or "not run" for c in unfinished})
            raise GridFailed(f"grid {s.grid.name}: {len(unfinished)} cell(s) unfinished ({'; '.join(reasons)}); rerun the same command to resume")
        return summary


class SpecStyle(Style):
    """A single spec as the user sees it: its phases numbered in order, then the results table;
    a failing phase or evaluation is raised as its own error (its runs end FAILED)."""

    def phase_found_done(self, run: PreparedRun, phase: Phase) -> None:
        self.phase_started(run, phase, 1, 0)

    def phase_started(self, run: PreparedRun, phase: Phase, cells: int, running: int) -> None:
        self.out(f"== phase {phase.index + 1}/{len(run.phases)} {phase.kind} {phase.task} [{phase.id}] from {run.init_dir(phase)}")

    def phase_finished(self, phase: Phase, outcome: PhaseOutcome) -> None:
        if outcome.reused:
            self.out(f"   already trained: reusing {shared_location(outcome.output_dir)}")

    def phase_failed(self, phase: Phase, error: BaseException) -> None:
        raise error

    def encoder_evaluation_started(self, evaluation: EncoderEvaluation, model_dir: str) -> None:
        self.out(f"== {evaluation.task}: no training phase; evaluating {evaluation.encoder}: {model_dir}")

    def evaluation_failed(self, cell_run: CellRun, error: BaseException) -> None:
        raise error

    def end(self, s: Scheduler) -> RunSummary:
        """The results table, where they are written and the MLflow run."""
        (cell_run,) = s.cells
        run, results = cell_run.run, cell_run.results
        self.out("")
        self.out(results.table())
        self.out(f"\nresults: {run.run_dir}\nMLflow: {run.tracking_uri} (experiment {run.spec.tracking.experiment!r}, run {cell_run.parent})")
        phase_run_ids = {phase.id: cell_run.children[phase.hash] for phase in run.phases}
        if cell_run.evaluation is not None:
            phase_run_ids[cell_run.evaluation.id] = cell_run.children[cell_run.evaluation.id]
        outcomes = [s.outcomes[phase.hash] for phase in run.phases]
        return RunSummary(run.run_dir, run.tracking_uri, cell_run.parent, phase_run_ids, outcomes, results)
