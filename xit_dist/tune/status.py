"""``xit-dist tune SPEC --status``: where a search stands, read from its files alone (the study's
journal, the clock, the stop record; from the bucket when ``output_dir`` is one), so it starts
nothing and works while the search runs, after it was interrupted, or on another machine."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from xit_dist.config import layout
from xit_dist.tracking.object_files import fetch_kept_file, shared_location
from xit_dist.tune import stopping
from xit_dist.tune.search_spec import SearchSpec

STATES = {"COMPLETE": "completed", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running", "WAITING": "running"}


def load_study(search: SearchSpec, search_dir: Path):
    """The search's Optuna study, or None before its first trial."""
    import optuna

    from xit_dist.tune.optuna_search import study_storage

    if not fetch_kept_file(layout.study_file(search_dir)):
        return None
    try:
        return optuna.load_study(study_name=search.name, storage=study_storage(search_dir))
    except KeyError:  # a journal without this study
        return None


def search_status(search: SearchSpec) -> str:
    """The status lines of one search."""
    from xit_dist.tune.callbacks import describe_values

    search_dir = search.search_dir()
    where = shared_location(search_dir)
    study = load_study(search, search_dir)
    if study is None:
        return f"search {search.name} ({where}): not started"
    trials = study.get_trials(deepcopy=False)
    counts = Counter(STATES[t.state.name] for t in trials)
    lines = [
        f"search {search.name} ({where}): {len(trials)} of {search.num_samples} trials: "
        + ", ".join(f"{counts[state]} {state}" for state in ("completed", "pruned", "running", "failed"))
    ]
    completed = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    if completed:
        sign = 1 if search.mode == "max" else -1
        best = min(completed, key=lambda t: (-sign * t.value, t.number))
        lines.append(f"best: trial {best.number}, {search.objective_metric} {best.value:.4g} ({describe_values(best.params)})")
    else:
        lines.append("best: none yet (no trial has trained to the end)")
    fetch_kept_file(layout.clock_file(search_dir))
    budget = search.stop.time_budget_s
    of_budget = f" of a {stopping.describe_seconds(budget)} budget" if budget else ""
    lines.append(f"time spent: {stopping.describe_seconds(stopping.recorded_seconds(search_dir))}{of_budget}")
    lines.append(f"state: {state_line(search, trials, counts, stopping.stopped_because(search_dir))}")
    return "\n".join(lines)


def state_line(search: SearchSpec, trials: list, counts: Counter, stopped: str | None) -> str:
    if counts["running"]:
        reason = f" (stopping: {stopped})" if stopped else ""
        return f"running, or interrupted with {counts['running']} trial(s) unfinished{reason}: `--resume` carries it on"
    if stopped:
        return f"stopped: {stopped}"
    if len(trials) >= search.num_samples:
        return "finished: every trial is done"
    return f"interrupted with {search.num_samples - len(trials)} trial(s) to start: `--resume` carries it on"
