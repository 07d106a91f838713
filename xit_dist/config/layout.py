"""Every path under ``output_dir``, in one place. Existing run directories are resumed from these
paths, so they never change::

    <output_dir>/
      runs/<spec name>/spec.yaml      the spec as run; its results files beside it (evaluate/results.py)
      phases/<phase id>/              a phase's outputs (train/phase.py names the files inside)
        eval/<key>.json               its cached zero-shot evaluations
      ray/<phase id>/                 Ray Train's storage: checkpoints of every phase
      mlartifacts/                    MLflow artifacts, when the store is sqlite (mlflow.db: tracking/store.py)
      searches/<search name>/         search.yaml, trials.csv, best.yaml, optuna.journal, tune/ (Ray Tune),
                                      clock.json (time spent), stopped.json (why it stopped early)
        trials/<NNNN>/                a trial's own output_dir (its phases/, ray/ ...)

``output_dir`` may be a bucket (``s3://bucket/prefix``, ``gs://...``): then the same tree is in
the bucket, and the paths below name this node's mirror of it (tracking/object_files.py), which
the run layer fills from the bucket and uploads to it; Ray Train's storage and MLflow's artifacts
are the bucket itself.

Files inside a phase directory are named by the train layer that writes them (``phase.json``,
``progress.json``, ...), and the results files by ``evaluate/results.py``: both sit below ``plan``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from xit_dist.tracking.object_files import is_object_store_uri, mirror_path

DEFAULT_OUTPUT_DIR = "xit_runs"  # the spec's output_dir default
RUNS_DIR = "runs"
SPEC_COPY_FILE = "spec.yaml"
PHASES_DIR = "phases"
EVAL_CACHE_DIR = "eval"
RAY_STORAGE_DIR = "ray"
ARTIFACTS_DIR = "mlartifacts"
SEARCHES_DIR = "searches"
SEARCH_SPEC_FILE = "search.yaml"
TRIALS_TABLE_FILE = "trials.csv"
BEST_FILE = "best.yaml"
STUDY_FILE = "optuna.journal"
CLOCK_FILE = "clock.json"
STOPPED_FILE = "stopped.json"
TUNE_DIR = "tune"
TRIALS_DIR = "trials"


class Placed(Protocol):
    """What the layout reads of an ``ExperimentSpec`` (config/spec.py, which takes its default
    output_dir from here: so a protocol, not an import of the spec)."""

    name: str
    output_dir: str


class Identified(Protocol):
    """A phase or an encoder evaluation (plan/phases.py): its id names its directories."""

    @property
    def id(self) -> str: ...


def default_output_dir() -> Path:
    """A spec's ``output_dir`` when it names none (``xit_runs``, relative to where the command
    runs): where ``report`` and ``ui`` look for a store when given no spec."""
    return Path(DEFAULT_OUTPUT_DIR)


def output_root(output_dir: str | Path) -> Path:
    """``output_dir`` as every path below is built from: ``~`` expanded, absolute, symlinks
    resolved; a bucket's mirror on this node."""
    if is_object_store_uri(output_dir):
        return mirror_path(str(output_dir))
    return Path(output_dir).expanduser().resolve()


def in_bucket(output_dir: str | Path) -> bool:
    """Whether ``output_dir`` is a bucket (the run layer then uploads what it writes)."""
    return is_object_store_uri(output_dir)


def _under(output_dir: str | Path, name: str) -> str:
    """``<output_dir>/<name>`` as the storage itself names it: a URI in a bucket, else a path."""
    if is_object_store_uri(output_dir):
        return f"{str(output_dir).rstrip('/')}/{name}"
    return str(output_root(output_dir) / name)


def run_dir(spec: Placed) -> Path:
    return output_root(spec.output_dir) / RUNS_DIR / spec.name


def spec_copy(run_directory: Path) -> Path:
    """The spec as run, written at every start (and logged as the parent run's artifact)."""
    return run_directory / SPEC_COPY_FILE


def phases_root(spec: Placed) -> Path:
    return output_root(spec.output_dir) / PHASES_DIR


def phase_dir(spec: Placed, phase: Identified) -> Path:
    """A phase's outputs; an encoder evaluation has a directory of its own there too (its cache)."""
    return phases_root(spec) / phase.id


def eval_cache_dir(spec: Placed, phase: Identified) -> Path:
    """Cached evaluations of a target phase's model, or of an encoder evaluation."""
    return phase_dir(spec, phase) / EVAL_CACHE_DIR


def ray_storage(output_dir: str | Path) -> str:
    """Ray Train's storage path (checkpoints of every phase), on the storage every node reads:
    a directory, or the bucket itself (Ray Train writes it with pyarrow.fs)."""
    return _under(output_dir, RAY_STORAGE_DIR)


def ray_run_dir(spec: Placed, phase: Identified) -> str:
    """A phase's Ray Train run (its run name is the phase id)."""
    return f"{ray_storage(spec.output_dir)}/{phase.id}"


def artifacts_location(output_dir: str | Path) -> str:
    """MLflow's artifact root under output_dir, as a URI (``file://...``, or in the bucket)."""
    if is_object_store_uri(output_dir):
        return _under(output_dir, ARTIFACTS_DIR)
    return (output_root(output_dir) / ARTIFACTS_DIR).as_uri()


def artifact_root(output_dir: str | Path, tracking_uri: str) -> str | None:
    """Where MLflow keeps artifacts: beside a sqlite store under output_dir; a server (or a file
    store) keeps its own, so None."""
    return artifacts_location(output_dir) if tracking_uri.startswith("sqlite") else None


def search_dir(output_dir: str | Path, search_name: str) -> Path:
    return output_root(output_dir) / SEARCHES_DIR / search_name


def search_spec_file(search_directory: Path) -> Path:
    """The resolved search spec, compared on ``--resume``."""
    return search_directory / SEARCH_SPEC_FILE


def trials_table(search_directory: Path) -> Path:
    return search_directory / TRIALS_TABLE_FILE


def best_file(search_directory: Path) -> Path:
    """The best trial's training settings: what ``training_from: tune:<name>`` reads."""
    return search_directory / BEST_FILE


def study_file(search_directory: Path) -> Path:
    """Optuna's journal: the study a resumed search continues."""
    return search_directory / STUDY_FILE


def clock_file(search_directory: Path) -> Path:
    """The time the search's drivers have run, all runs together (tune/stopping.py)."""
    return search_directory / CLOCK_FILE


def stopped_file(search_directory: Path) -> Path:
    """Why a search stopped before num_samples, once it has (tune/stopping.py)."""
    return search_directory / STOPPED_FILE


def tune_dir(search_directory: Path) -> Path:
    """Ray Tune's experiment state (``tuner.pkl``, ...): what ``--resume`` restores."""
    return search_directory / TUNE_DIR


def trial_dir(search_directory: Path, number: int) -> Path:
    """A trial's own output_dir: trials never share a phase directory, even with equal values."""
    return search_directory / TRIALS_DIR / f"{number:04d}"
