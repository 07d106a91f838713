"""When a search stops asking for trials before ``num_samples``: after N completed trials in a row
that did not beat its best score, or once its time budget is spent (``stop:`` in the search
spec). Trials already running finish; the search then ends as finished, its reason recorded in
``<search>/stopped.json`` (and said on the console, in ``tune --status`` and as the MLflow tag
``xit.stop_reason``). A resumed search reads the same study and the same clock, so a search that
stopped stays stopped (unless its spec's ``stop:`` is changed: stop rules are not part of a
search's identity).

The clock (``<search>/clock.json``) counts the time the search's drivers have run, all runs
together: each driver adds its own running time (written every few seconds and at its end), so
a killed driver loses at most those few seconds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from xit_dist.config import layout
from xit_dist.tracking.object_files import read_kept_text, write_kept_text

CLOCK_WRITE_EVERY_S = 5.0


@dataclass(frozen=True)
class Completed:
    """A trial that trained to the end, in the order the study numbers them."""

    number: int
    value: float


def no_improvement_streak(completed: list[Completed], mode: str) -> tuple[int, Completed | None]:
    """How many completed trials since the best one (in trial order), and the best."""
    best: Completed | None = None
    streak = 0
    for trial in sorted(completed, key=lambda t: t.number):
        if best is None or (trial.value > best.value if mode == "max" else trial.value < best.value):
            best, streak = trial, 0
        else:
            streak += 1
    return streak, best


def stop_reason(completed: list[Completed], mode: str, no_improvement_trials: int | None, time_budget_s: float | None,
                spent_s: float) -> str | None:
    """Why no new trial should start (None: it may)."""
    if no_improvement_trials:
        streak, best = no_improvement_streak(completed, mode)
        if best is not None and streak >= no_improvement_trials:
            return f"no improvement in {streak} completed trial(s) after the best, trial {best.number} ({best.value:.4g})"
    if time_budget_s and spent_s >= time_budget_s:
        return f"time budget spent: {describe_seconds(spent_s)} of {describe_seconds(time_budget_s)}"
    return None


def describe_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"


# ------------------------------------------------------------------ the rule in force

_RULES: dict[str, tuple[int | None, float | None]] = {}  # search dir -> (no_improvement_trials, time_budget_s)


def set_rule(search_dir: Path, no_improvement_trials: int | None, time_budget_s: float | None) -> None:
    """The stop rule of this run of the search (its spec's, which a resume may change: the
    searcher Tune restores carries the rule it was saved with)."""
    _RULES[str(search_dir)] = (no_improvement_trials, time_budget_s)


def rule(search_dir: Path) -> tuple[int | None, float | None]:
    return _RULES.get(str(search_dir), (None, None))


# ------------------------------------------------------------------ the clock

_SESSIONS: dict[str, tuple[float, float]] = {}  # search dir -> (time spent before this process, monotonic start)


def spent_seconds(search_dir: Path) -> float:
    """The search's running time so far, this driver's included."""
    before, started = _session(search_dir)
    return before + time.monotonic() - started


def _session(search_dir: Path) -> tuple[float, float]:
    key = str(search_dir)
    if key not in _SESSIONS:
        _SESSIONS[key] = (recorded_seconds(search_dir), time.monotonic())
    return _SESSIONS[key]


def recorded_seconds(search_dir: Path) -> float:
    """The time the clock file holds (0 before the first write)."""
    text = read_kept_text(layout.clock_file(search_dir))
    return float(json.loads(text)["spent_s"]) if text else 0.0


def write_clock(search_dir: Path) -> None:
    write_kept_text(layout.clock_file(search_dir), json.dumps({"spent_s": round(spent_seconds(search_dir), 1)}))


def record_stop(search_dir: Path, reason: str) -> None:
    """The first reason a search stopped for (kept: a resumed search says the same)."""
    if stopped_because(search_dir) is None:
        write_kept_text(layout.stopped_file(search_dir), json.dumps({"reason": reason, "at": time.strftime("%Y-%m-%d %H:%M:%S")}))


def stopped_because(search_dir: Path) -> str | None:
    text = read_kept_text(layout.stopped_file(search_dir))
    return json.loads(text)["reason"] if text else None
