"""``xit-dist ui``: the MLflow UI on the project's tracking store, bound to 127.0.0.1 only.

The store is the one runs and searches write to: the spec's ``tracking.uri``, else
``MLFLOW_TRACKING_URI``, else ``<output_dir>/mlflow.db`` (default output_dir ``xit_runs``), or the
one ``--store`` names. There the runs of searches and grids sit side by side: parent runs with
their trials or phases nested under them, per-language metric columns (``xnli.accuracy.de``),
the parallel-coordinates view when a search's trials are compared, the result tables and PNGs
under each run's artifacts.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from xit_dist.errors import XitError
from xit_dist.config import layout

HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 120


def store_for(spec_path: str | None, overrides: list[str], store: str | None) -> tuple[str, str | None]:
    """(tracking URI, artifact directory) of an experiment or search spec, or of the default layout."""
    from xit_dist.config.load import load_spec
    from xit_dist.tracking.store import resolve_tracking_uri

    if store:
        uri = store if "://" in store else f"sqlite:///{Path(store).expanduser().resolve()}"
        return uri, None
    if spec_path is None:
        output_dir, configured = layout.default_output_dir(), None
    else:
        if _is_search_spec(spec_path):
            from xit_dist.tune.search_spec import load_search_spec

            spec = load_search_spec(spec_path, overrides).base_spec()
        else:
            spec = load_spec(spec_path, overrides)
        output_dir, configured = spec.output_dir, spec.tracking.uri
    return resolve_tracking_uri(configured, layout.output_root(output_dir)), layout.artifacts_location(output_dir)


def _is_search_spec(path: str) -> bool:
    try:
        tree = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False  # load_spec reports it properly
    return isinstance(tree, dict) and "space" in tree


def check_store(uri: str) -> None:
    if uri.startswith("sqlite:///"):
        database = Path(uri[len("sqlite:///"):])
        if not database.is_file():
            raise XitError(f"no MLflow store at {database}: run an experiment or a search first, or name one with --store")
    elif uri.startswith(("http://", "https://")):
        raise XitError(f"the tracking store {uri} is already an MLflow server: open it in a browser")


def check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            raise XitError(f"--port {port}: {HOST}:{port} is in use; pass another port") from None


def server_command(uri: str, port: int, artifacts: str | None) -> list[str]:
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", HOST, "--port", str(port), "--workers", "1"]
    if artifacts is not None:  # where artifacts logged through this server would go
        command += ["--artifacts-destination", artifacts]
    return command


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = STARTUP_TIMEOUT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    return False


# MLflow 3.17's UI shows an experiment as its sidebar switch says (GenAI by default: an overview
# of traces); this query parameter opens the experiment's runs table instead, whatever was chosen.
RUNS_VIEW = "workflowType=machine_learning"


def experiment_pages(uri: str, url: str) -> list[tuple[str, str]]:
    """(name, runs page URL) of every experiment in the store that holds runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return [(e.name, f"{url}/#/experiments/{e.experiment_id}?{RUNS_VIEW}")
            for e in client.search_experiments() if client.search_runs([e.experiment_id], max_results=1)]


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve(uri: str, port: int, artifacts: str | None) -> int:
    """Runs ``mlflow server`` in the foreground; prints the URL once it answers. Ctrl-C stops it."""
    check_store(uri)
    check_port_free(port)
    url = f"http://{HOST}:{port}"
    # Job execution starts extra worker processes the UI does not need (and ~10 s of startup).
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    print(f"starting the MLflow UI on {uri} ...", flush=True)
    process = subprocess.Popen(server_command(uri, port, artifacts), env=env)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the server too, like Ctrl-C
    try:
        if wait_until_up(url, process):
            print(f"MLflow UI: {url}  (Ctrl-C stops it)", flush=True)
            for name, page in experiment_pages(uri, url):
                print(f"  experiment {name}: {page}", flush=True)
        elif process.poll() is None:
            print(f"the MLflow server has not answered at {url} after {STARTUP_TIMEOUT_S} s; still waiting", flush=True)
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        return 0
