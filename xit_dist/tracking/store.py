"""MLflow: one parent run per experiment run, one nested child run per phase.

Runs are found again by tags (``xit.spec_fingerprint`` on the parent, ``xit.phase_hash`` on a
child), so rerunning an interrupted spec continues the same runs instead of duplicating them.
Finding and creating a run happen under a file lock (``RUNS_LOCK`` in the run's output_dir, or
beside a sqlite store), so two drivers of one spec started at once find the same runs too.
Only the driver and rank 0 of a phase write.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xit_dist.errors import XitError
from xit_dist.tracking.tags import EXPERIMENT_KIND_TAG, MODEL_TRAINING_EXPERIMENT, PARENT_TAG, PHASE_TAG, SPEC_TAG

DEFAULT_STORE_FILE = "mlflow.db"   # <output_dir>/mlflow.db: the store when none is configured
RUNS_LOCK = ".mlflow-runs.lock"
RESERVE_FILE = ".mlflow-reserve"   # beside a sqlite store: room to end its runs once the disk is full
RESERVE_BYTES = 1024**2
MAX_PARAM_LENGTH = 6000
PARAMS_PER_BATCH = 100      # MLflow's log_batch limits: 100 params or tags, 1000 metrics, 1000 in all
TAGS_PER_BATCH = 100
METRICS_PER_BATCH = 1000


def resolve_tracking_uri(configured: str | None, output_dir: Path) -> str:
    """The spec's ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else sqlite under output_dir."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{(output_dir / DEFAULT_STORE_FILE).resolve()}"


def flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    """Nested spec -> ``{"target.training.learning_rate": "1e-05", ...}`` for MLflow params."""
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in flatten(value, f"{prefix}{key}.").items()}
    if isinstance(tree, list) and tree and all(isinstance(v, dict) for v in tree):
        return {k: v for i, value in enumerate(tree) for k, v in flatten(value, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): str(tree)[:MAX_PARAM_LENGTH]}


@contextlib.contextmanager
def store_errors_unlogged() -> Iterator[None]:
    """MLflow's sqlite store logs a whole traceback before it raises on a database error (a
    full disk, a lock): callers that report the error in one line of their own mute it."""
    store_log = logging.getLogger("mlflow.store.db.utils")
    level = store_log.level
    store_log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        store_log.setLevel(level)


def check_server_answers(tracking_uri: str, timeout: float = 5.0) -> None:
    """An MLflow server must answer /health within seconds: MLflow's own client retries a dead
    server with back-off for minutes before it gives up."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except urllib.error.HTTPError as err:
        problem = f"HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        problem = str(getattr(err, "reason", err))
    raise XitError(f"tracking.uri {tracking_uri}: the MLflow server does not answer ({url}: {problem})")


def default_lock_dir(tracking_uri: str) -> Path | None:
    """Beside a sqlite store (every process that writes it can lock there); None for a server."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri[len("sqlite:///"):]).parent
    return None


def _make_reserve(tracking_uri: str) -> Path | None:
    """A sqlite store on the disk a run fills up cannot even record that the run failed (its
    journal needs a few pages): a 1 MiB file beside it is given back at that moment."""
    directory = default_lock_dir(tracking_uri)
    if directory is None:
        return None
    reserve = directory / RESERVE_FILE
    try:
        if not reserve.is_file() or reserve.stat().st_size < RESERVE_BYTES:
            with open(reserve, "wb") as handle:
                handle.write(b"\0" * RESERVE_BYTES)
    except OSError:  # no room for it: nothing to give back later
        reserve.unlink(missing_ok=True)
        return None
    return reserve


def _artifact_uri(root: str | Path | None) -> str | None:
    if root is None or isinstance(root, str):
        return root
    return root.resolve().as_uri()


class Tracker:
    def __init__(self, tracking_uri: str, experiment: str, artifact_root: str | Path | None, lock_dir: Path | None = None):
        """``artifact_root``: a new experiment's artifact location (a URI, or a local folder)."""
        from mlflow.tracking import MlflowClient

        self.uri = tracking_uri
        self.lock_dir = lock_dir or default_lock_dir(tracking_uri)
        self.reserve = _make_reserve(tracking_uri)
        check_server_answers(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        try:
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                found.experiment_id
                if found
                else self.client.create_experiment(
                    experiment, artifact_location=_artifact_uri(artifact_root)
                )
            )
            self._mark_model_training()
        except Exception as err:  # connection refused, bad URI, ...
            raise XitError(f"tracking.uri {tracking_uri}: MLflow is not reachable ({type(err).__name__}: {str(err).splitlines()[0]})") from None

    def _mark_model_training(self) -> None:
        """Tag the experiment as a model-training one (MLflow's experiment kind), unless a user
        chose a kind for it: the UI then offers runs, not the GenAI overview of traces."""
        if EXPERIMENT_KIND_TAG in self.client.get_experiment(self.experiment_id).tags:
            return
        try:
            self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_EXPERIMENT)
        except Exception:  # drivers started together: another one's tag got there first
            if EXPERIMENT_KIND_TAG not in self.client.get_experiment(self.experiment_id).tags:
                raise

    def free_reserve(self) -> bool:
        """Give the store's disk back its reserve (True if there was one to give)."""
        if self.reserve is None or not self.reserve.is_file():
            return False
        self.reserve.unlink()
        return True

    # ------------------------------------------------------------------ runs
    def _find(self, filter_string: str) -> str | None:
        runs = self.client.search_runs([self.experiment_id], filter_string=filter_string, max_results=1)
        return runs[0].info.run_id if runs else None

    def _runs_lock(self):
        import contextlib

        from xit_dist.tracking.locks import exclusive

        return exclusive(self.lock_dir / RUNS_LOCK) if self.lock_dir else contextlib.nullcontext()

    def parent_run(self, run_name: str, spec_fingerprint: str) -> str:
        return self.keyed_run(run_name, SPEC_TAG, spec_fingerprint)

    def find_keyed(self, key_tag: str, key: str) -> str | None:
        return self._find(f"tags.`{key_tag}` = '{key}'")

    def keyed_run(self, run_name: str, key_tag: str, key: str, tags: dict[str, str] | None = None) -> str:
        """The top-level run whose ``key_tag`` is ``key``, created on first use; RUNNING again."""
        with self._runs_lock():
            run_id = self.find_keyed(key_tag, key)
            if run_id is None:
                return self.client.create_run(self.experiment_id, run_name=run_name, tags={key_tag: key, **(tags or {})}).info.run_id
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def child_run(self, parent_id: str, run_name: str, phase_hash: str, tags: dict[str, str]) -> str:
        return self.nested_run(parent_id, run_name, PHASE_TAG, phase_hash, tags)

    def nested_run(self, parent_id: str, run_name: str, key_tag: str, key: str, tags: dict[str, str]) -> str:
        """The child of ``parent_id`` whose ``key_tag`` is ``key``, created on first use."""
        with self._runs_lock():
            run_id = self.find_nested(parent_id, key_tag, key)
            if run_id is None:
                all_tags = {PARENT_TAG: parent_id, key_tag: key, **tags}
                return self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags).info.run_id
        self.client.update_run(run_id, status="RUNNING")
        return run_id

    def find_nested(self, parent_id: str, key_tag: str, key: str) -> str | None:
        return self._find(f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.`{key_tag}` = '{key}'")

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        self.client.set_terminated(run_id, status=status)

    # ------------------------------------------------------------------ data
    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(run_id).data.params
        fresh = [Param(k, v) for k, v in params.items() if k not in existing]
        for i in range(0, len(fresh), PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=fresh[i : i + PARAMS_PER_BATCH])

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        entries = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(entries), METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=entries[i : i + METRICS_PER_BATCH])

    def log_new_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        """Only the metrics the run lacks or holds with another latest value: logging the same
        results again (a rerun, a second driver) adds no duplicate points."""
        held = self.client.get_run(run_id).data.metrics
        self.log_metrics(run_id, {k: v for k, v in metrics.items() if held.get(k) != float(v)}, step)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        entries = [RunTag(key, str(value)) for key, value in tags.items()]
        for i in range(0, len(entries), TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=entries[i : i + TAGS_PER_BATCH])

    def log_datasets(self, run_id: str, records: list[dict]) -> None:
        """The data sets a run read (``data.dataset_records``) as MLflow dataset inputs, with
        their ``mlflow.data.context`` (training / evaluation); logging one again adds nothing."""
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.entities import DatasetInput, InputTag

        inputs = [
            DatasetInput(MetaDataset(dataset_source(record), name=record["name"], digest=record["digest"])._to_mlflow_entity(),
                         tags=[InputTag("mlflow.data.context", record["context"])])
            for record in records
        ]
        if inputs:
            self.client.log_inputs(run_id, datasets=inputs)

    def log_artifacts(self, run_id: str, paths: list[Path], artifact_path: str | None = None) -> None:
        for path in paths:
            self.client.log_artifact(run_id, str(path), artifact_path)


def dataset_source(record: dict):
    """MLflow's source of a data set a phase read: the hub (id, config, split, revision), or the
    local file or release directory it was read from."""
    if record["source"] == "hub":
        from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

        return HuggingFaceDatasetSource(record["hub_id"], config_name=record["config"], split=record["split"], revision=record["revision"])
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():  # MLflow registers its local-file source twice, then warns that two match
        warnings.simplefilter("ignore", UserWarning)
        return resolve_dataset_source(Path(record["source"]).resolve().as_uri())
