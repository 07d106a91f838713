"""Rank 0's training metrics on their way to MLflow, without ever holding training up.

A dead or slow MLflow server used to stall rank 0 inside the client's HTTP retries (about four
minutes per call) until Ray counted the worker as failed and restarted the phase. Now the loop
only appends to a bounded buffer; a background thread sends batches, keeps what it could not
send and sends it once the store answers again. What is still unsent when training ends is left
in the phase directory (``PENDING_FILE``) for the driver to send after the phase.

Each (metric, step) reaches the run once: steps the run holds already (logged before an
interruption, then trained again after resuming from an earlier checkpoint) are skipped. The
running loss window is kept in each checkpoint's progress record (``LOSS_WINDOW``), so the
first loss logged after a resume averages the same micro batches as in an uninterrupted run.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from xit_dist.train.job import PhaseJob

PENDING_FILE = "mlflow_pending.json"
LOSS_WINDOW = "loss_window"
MAX_PENDING = 200_000          # metric values held while the store does not answer; beyond, the oldest go
BATCH = 1000                   # MLflow's limit of metrics per log_batch
RETRY_SECONDS = (1, 2, 5, 10)  # waits between attempts while the store does not answer
CLOSE_SECONDS = 30.0           # how long the end of training waits for the last values to go out


class LoggedSteps:
    """The steps each metric of one run holds already, read from the store once per metric."""

    def __init__(self, client, run_id: str):
        self.client, self.run_id = client, run_id
        self.steps: dict[str, set[int]] = {}

    def fresh(self, metrics: list) -> list:
        """``metrics`` less the (key, step) pairs the run holds already or that repeat."""
        out, seen = [], set()
        for metric in metrics:
            if metric.key not in self.steps:
                self.steps[metric.key] = {point.step for point in self.client.get_metric_history(self.run_id, metric.key)}
            if metric.step not in self.steps[metric.key] and (metric.key, metric.step) not in seen:
                seen.add((metric.key, metric.step))
                out.append(metric)
        return out

    def send(self, metrics: list) -> int:
        """Log what the run lacks; returns how many values went out."""
        fresh = self.fresh(metrics)
        for i in range(0, len(fresh), BATCH):
            chunk = fresh[i : i + BATCH]
            self.client.log_batch(self.run_id, metrics=chunk)
            for metric in chunk:
                self.steps[metric.key].add(metric.step)
        return len(fresh)


def send_pending(client, run_id: str, phase_dir: Path) -> int:
    """The driver's part: send what a phase's rank 0 could not, then drop the file."""
    pending = Path(phase_dir) / PENDING_FILE
    if not pending.is_file():
        return 0
    sent = LoggedSteps(client, run_id).send(read_pending(pending))
    pending.unlink()
    return sent


def read_pending(path: Path) -> list:
    from mlflow.entities import Metric

    return [Metric(key, value, timestamp, step) for key, value, timestamp, step in json.loads(path.read_text())]


def write_pending(path: Path, metrics: list) -> None:
    """Appends to what an earlier attempt of the phase left."""
    kept = json.loads(path.read_text()) if path.is_file() else []
    kept += [[m.key, m.value, m.timestamp, m.step] for m in metrics]
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(kept))
    partial.replace(path)


class MetricsSink:
    """Rank 0 sends per-step training metrics to the phase's MLflow run from a background
    thread; ``log`` never waits for the store. Other ranks get a sink that does nothing."""

    def __init__(self, tracking_uri: str | None, run_id: str | None, pending_file: Path | None = None,
                 label: str = "", say: Callable[[str], None] = print):
        self.run_id, self.pending_file, self.label, self.say = run_id, pending_file, label, say
        self._buffer: collections.deque = collections.deque()
        self._inflight: list = []
        self._cond = threading.Condition()
        self._closing = False
        self.dropped = 0
        self._thread = None
        if tracking_uri and run_id:
            self._thread = threading.Thread(target=self._send_forever, args=(tracking_uri,), name="xit-metrics", daemon=True)
            self._thread.start()

    @classmethod
    def for_job(cls, job: PhaseJob, rank: int) -> "MetricsSink":
        if rank != 0:
            return cls(None, None)
        from xit_dist.tracking.object_files import local_path

        return cls(job.tracking_uri, job.mlflow_run_id, local_path(job.phase_dir) / PENDING_FILE, f"[{job.phase_id}] ")

    def log(self, step: int, values: dict[str, float]) -> None:
        if self._thread is None or not values:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        with self._cond:
            self._buffer.extend(Metric(key, float(value), now, step) for key, value in values.items())
            self._trim()
            self._cond.notify_all()

    def _trim(self) -> None:
        while len(self._buffer) > MAX_PENDING:
            self._buffer.popleft()
            self.dropped += 1

    def close(self, timeout: float = CLOSE_SECONDS) -> list:
        """Wait up to ``timeout`` seconds for the rest to go out; what did not is written to
        ``pending_file`` (when given) and returned."""
        if self._thread is None:
            return []
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while (self._buffer or self._inflight) and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            left = [*self._inflight, *self._buffer]
        if self.dropped:
            self.say(f"{self.label}MLflow: {self.dropped} metric values dropped while the store did not answer (more than {MAX_PENDING} waiting)")
        if left and self.pending_file is not None:
            try:
                write_pending(self.pending_file, left)
            except OSError as err:  # never a reason for the phase to fail
                self.say(f"{self.label}MLflow does not answer, and {len(left)} metric values could not be kept ({err})")
            else:
                self.say(f"{self.label}MLflow does not answer: {len(left)} metric values kept in {self.pending_file}; "
                         "the driver sends them after the phase")
        return left

    def _send_forever(self, tracking_uri: str) -> None:
        from mlflow.tracking import MlflowClient

        from xit_dist.tracking.store import store_errors_unlogged

        logged = LoggedSteps(MlflowClient(tracking_uri), self.run_id)
        failures = 0
        while True:
            with self._cond:
                while not self._buffer and not self._closing:
                    self._cond.wait()
                if not self._buffer:
                    return
                self._inflight = [self._buffer.popleft() for _ in range(min(BATCH, len(self._buffer)))]
            try:
                _check_answers(tracking_uri)
                with store_errors_unlogged():
                    logged.send(self._inflight)
            except Exception as err:  # the store is down or refuses: keep the values, try again
                failures += 1
                if failures == 1:
                    self.say(f"{self.label}MLflow does not answer ({_first_line(err)}): training goes on; "
                             "its metrics are kept and sent when the store answers again")
                with self._cond:
                    self._buffer.extendleft(reversed(self._inflight))
                    self._inflight = []
                    self._trim()
                    self._cond.notify_all()
                time.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS)) - 1])
                continue
            if failures:
                self.say(f"{self.label}MLflow answers again: sending the metrics kept since")
            failures = 0
            with self._cond:
                self._inflight = []
                self._cond.notify_all()


def _check_answers(tracking_uri: str) -> None:
    """A server that is down fails here in seconds, instead of in MLflow's minutes of retries."""
    from xit_dist.tracking.store import check_server_answers

    check_server_answers(tracking_uri, timeout=2.0)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def loss_window_record(window_loss, window_micro: int, step: int) -> dict[str, Any]:
    """Every rank's partial loss sum since the last logged step (a collective: all ranks call
    it at each checkpoint), for rank 0 to keep in the progress record."""
    import torch

    sums: list[float | None] = [float(window_loss)]
    if torch.distributed.is_initialized():
        sums = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(sums, float(window_loss))
    return {"step": step, "micro": window_micro, "sums": sums}


def restored_loss_window(progress: dict[str, Any], rank: int, device):
    """The loss window a checkpoint kept, when it was written at the step training resumes
    from; else an empty one. Returns (this rank's sum, micro batches in it)."""
    import torch

    window = torch.zeros((), device=device)
    saved = progress.get(LOSS_WINDOW)
    if not saved or saved["step"] != progress["global_step"]:
        return window, 0
    window.fill_(saved["sums"][rank])
    return window, saved["micro"]
