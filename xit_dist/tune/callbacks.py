"""What the search driver does when Tune moves a trial along (Tune ``Callback``s, run in the
driver process, saved and restored with the experiment's state).

``TrialRecorder``: a trial ASHA stops is killed by Tune in the middle of its training, so it
cannot close its own MLflow run; the driver records every trial's end instead: state tag
(completed / pruned / failed), the objective value Optuna was told (``objective.<metric>``),
the MLflow status (FINISHED / KILLED / FAILED), and a console line.

``StudyKeeper``: with output_dir in a bucket, the study's journal (a file on the driver's node)
uploaded as each trial ends.

``ClockKeeper``: the search's time spent, written as it runs (tune/stopping.py).

``AshaRungState``: Tune saves the searcher's state with the experiment but not the scheduler's,
so a resumed search would start ASHA with empty rungs and compare the remaining trials with
nothing. This callback saves the rungs' recorded scores with the experiment state and puts them
back on restore. (It reads ASHA's bookkeeping, ``_brackets`` and their ``_rungs``: Ray has no
public accessor.)
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from xit_dist.console import say
from xit_dist.tracking.tags import TRIAL_KIND, TRIAL_STATE_TAG, TRIAL_TAG
from xit_dist.tune.optuna_search import FINISHED_KEY, STEP_KEY, TRIAL_NUMBER, VALUES

MLFLOW_STATUS = {"completed": "FINISHED", "pruned": "KILLED", "failed": "FAILED"}


def trial_state(result: dict[str, Any] | None, error: bool) -> str:
    """completed: trained to the end; pruned: stopped by the scheduler; failed: raised."""
    if error:
        return "failed"
    return "completed" if (result or {}).get(FINISHED_KEY) else "pruned"


def describe_values(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


class TrialRecorder(Callback):
    def __init__(self, tracking_uri: str, experiment: str, parent_run_id: str, search_name: str, intermediate: str, metric: str):
        self.tracking_uri, self.experiment, self.parent_run_id = tracking_uri, experiment, parent_run_id
        self.search_name, self.intermediate, self.metric = search_name, intermediate, metric

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        say(f"== trial {trial.config[TRIAL_NUMBER]} started: {describe_values(trial.config[VALUES])}")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._record(trial, error=False)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._record(trial, error=True)

    def _record(self, trial, error: bool) -> None:
        from xit_dist.tracking.store import Tracker
        from xit_dist.run.runs import search_tags, trial_run_name

        number = trial.config[TRIAL_NUMBER]
        result = trial.last_result or {}
        state = trial_state(result, error)
        tracker = Tracker(self.tracking_uri, self.experiment, None)
        tags = search_tags(self.search_name, self.intermediate, TRIAL_KIND)
        run_id = tracker.nested_run(self.parent_run_id, trial_run_name(number), TRIAL_TAG, str(number), tags)
        tracker.set_tags(run_id, {TRIAL_STATE_TAG: state})
        value = result.get(self.metric)
        if value is not None:
            tracker.log_metrics(run_id, {f"objective.{self.metric}": value}, step=int(result.get(STEP_KEY, 0)))
        tracker.finish(run_id, MLFLOW_STATUS[state])
        score = f": {self.metric} {value:.2f} at step {result.get(STEP_KEY)}" if value is not None else ""
        verb = {"completed": "completed", "pruned": "stopped by ASHA", "failed": "failed"}[state]
        say(f"== trial {number} {verb}{score}")


class StudyKeeper(Callback):
    """With output_dir in a bucket: the study's journal uploaded as each trial ends, so that a
    driver on another machine resumes the search with every decided trial."""

    def __init__(self, journal):
        self.journal = journal

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._keep()

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._keep()

    def _keep(self) -> None:
        from xit_dist.tracking.object_files import publish_file

        publish_file(self.journal)


class ClockKeeper(Callback):
    """The search's time spent written every few seconds, so a killed driver loses little of it
    (tune/stopping.py)."""

    def __init__(self, search_dir):
        self.search_dir = search_dir
        self._written = 0.0

    def on_step_end(self, iteration, trials, **info) -> None:
        import time

        from xit_dist.tune.stopping import CLOCK_WRITE_EVERY_S, write_clock

        if time.monotonic() - self._written >= CLOCK_WRITE_EVERY_S:
            write_clock(self.search_dir)
            self._written = time.monotonic()


class AshaRungState(Callback):
    def __init__(self, scheduler):
        self.scheduler = scheduler

    def get_state(self) -> dict[str, Any]:
        return {"rungs": [[dict(recorded) for _, recorded in bracket._rungs] for bracket in self.scheduler._brackets]}

    def set_state(self, state: dict[str, Any]) -> None:
        restored = 0
        for bracket, saved_rungs in zip(self.scheduler._brackets, state["rungs"]):
            for (_, recorded), saved in zip(bracket._rungs, saved_rungs):
                recorded.clear()
                recorded.update(saved)
                restored += len(saved)
        say(f"== ASHA resumes with {restored} recorded rung result(s)")
