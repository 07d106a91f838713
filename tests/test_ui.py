"""``xit-dist ui`` in a real browser: the command starts ``mlflow server`` on a store holding a
search (a parent run, trials nested under it, per-step and per-language metrics) and a grid
run; headless Chromium (Debian's ``chromium``, driven by playwright, no browser download) opens
the experiment and the comparison of the trials, and the runs and metrics must be on the page.
Screenshots land in the test's temporary directory."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from xit_dist.tracking.store import Tracker
from xit_dist.tracking.tags import TRIAL_TAG
from xit_dist.run.runs import trial_run_name

CHROMIUM = Path("/usr/bin/chromium")
EXPERIMENT = "xit-dist-ui-test"
SEARCH = "mnli-ui"
LEARNING_RATES = [1e-4, 1e-3, 3e-3]
PAGE_TIMEOUT_MS = 60_000


def chromium_or_skip() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} missing: .ci/run installs Debian's chromium package")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")


def build_store(root: Path) -> tuple[str, str, list[str]]:
    """A store laid out as ``xit-dist tune`` and ``xit-dist run`` write it."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracker = Tracker(uri, EXPERIMENT, root / "mlartifacts")
    parent = tracker.parent_run(f"search:{SEARCH}", "search-fingerprint")
    tracker.set_tags(parent, {"xit.search": SEARCH, "xit.intermediate": "mnli", "xit.kind": "search"})
    trials = []
    for number, learning_rate in enumerate(LEARNING_RATES):
        run = tracker.nested_run(parent, trial_run_name(number), TRIAL_TAG, str(number), {"xit.search": SEARCH, "xit.kind": "trial"})
        tracker.log_params(run, {"training.learning_rate": str(learning_rate), "training.batch_size": "32"})
        for step in range(10, 61, 10):
            tracker.log_metrics(run, {"train.loss": 1.1 - number * step / 600}, step=step)
        for step in (20, 40, 60):
            tracker.log_metrics(run, {"dev.accuracy": 35 + number * step / 6}, step=step)
        tracker.log_metrics(run, {"dev.xnli.accuracy.en": 40.0 + 5 * number, "dev.xnli.accuracy.de": 36.5 + 3 * number}, step=60)
        tracker.finish(run)
        trials.append(run)
    tracker.finish(parent)
    grid = tracker.parent_run("demo", "grid-fingerprint")
    tracker.log_metrics(grid, {"xnli.accuracy.en": 55.0, "xnli.accuracy.de": 47.5})
    tracker.finish(grid)
    return uri, tracker.experiment_id, trials


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def ui_server(tmp_path):
    """``xit-dist ui`` as a user starts it; yields (url, experiment id, trial run ids)."""
    uri, experiment_id, trials = build_store(tmp_path / "store")
    process = subprocess.Popen(
        [sys.executable, "-m", "xit_dist.cli", "ui", "--store", uri, "--port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url, lines = None, []
    timer = threading.Timer(150, process.kill)  # a server that never comes up fails the test
    timer.start()
    for line in process.stdout:
        lines.append(line)
        found = re.search(r"MLflow UI: (http://127\.0\.0\.1:\d+)", line)
        if found:
            url = found.group(1)
            break
    timer.cancel()
    threading.Thread(target=lambda: [lines.append(line) for line in process.stdout], daemon=True).start()
    assert url, "xit-dist ui never printed its URL:\n" + "".join(lines)
    yield url, experiment_id, trials
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, "".join(lines)


def test_ui_shows_the_search_runs_and_per_language_metrics(ui_server, tmp_path):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    url, experiment_id, trials = ui_server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(PAGE_TIMEOUT_MS)

        # The experiment's runs: the search's parent run, its trials nested under it.
        page.goto(f"{url}/#/experiments/{experiment_id}/runs")
        parent_row = page.locator(".ag-row").filter(has_text=f"search:{SEARCH}")
        parent_row.wait_for()
        assistant = page.locator('button[data-component-id="mlflow.assistant.chat_panel.close"]')
        if assistant.is_visible():  # MLflow's chat side panel: not ours, and it hides half the page
            assistant.click()
        assert page.get_by_text("demo", exact=True).is_visible()  # the grid run beside it
        assert not page.get_by_text(trial_run_name(0)).is_visible()  # nested: hidden until expanded
        parent_row.locator("button").first.click()
        for number in range(len(LEARNING_RATES)):
            page.get_by_text(trial_run_name(number), exact=True).wait_for()
        # The chart view: one chart per metric, per-language ones included.
        page.locator("label").filter(has=page.locator('input[value="CHART"]')).click()
        for metric in ("dev.xnli.accuracy.de", "xnli.accuracy.de", "dev.accuracy", "train.loss"):
            page.get_by_text(metric, exact=True).first.wait_for()
        page.screenshot(path=str(tmp_path / "mlflow_experiment.png"))

        # The trials compared: parallel coordinates of parameters against metrics.
        runs = ",".join(f'"{run}"' for run in trials)
        page.set_viewport_size({"width": 1600, "height": 1500})  # plot, parameters and metrics in one picture
        page.goto(f"{url}/#/compare-runs?runs=[{runs}]&experiments=[\"{experiment_id}\"]")
        page.get_by_text("Parallel Coordinates Plot").wait_for()
        page.get_by_text("training.learning_rate").first.wait_for()
        body = page.inner_text("body")
        for number in range(len(LEARNING_RATES)):
            assert trial_run_name(number) in body
        assert "dev.xnli.accuracy.de" in body and "36.5" in body and "42.5" in body
        page.screenshot(path=str(tmp_path / "mlflow_compare.png"), full_page=True)
        browser.close()
    print(f"screenshots: {tmp_path / 'mlflow_experiment.png'}, {tmp_path / 'mlflow_compare.png'}")


def test_ui_refuses_a_missing_store_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "xit_dist.cli", "ui", "--store", str(tmp_path / "none.db")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no MLflow store at" in result.stderr


def test_ui_finds_the_store_of_an_experiment_or_a_search_spec(tmp_path, monkeypatch):
    from xit_dist.report.ui import store_for

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    repo = Path(__file__).resolve().parents[1]
    demo_store = f"sqlite:///{(Path.cwd() / 'xit_runs' / 'mlflow.db').resolve()}"
    assert store_for(str(repo / "ray_configs" / "demo.yaml"), [], None)[0] == demo_store
    assert store_for(str(repo / "ray_configs" / "tune" / "mnli.yaml"), [], None)[0] == demo_store  # its base's store
    moved = store_for(str(repo / "ray_configs" / "demo.yaml"), [f"output_dir={tmp_path}"], None)
    assert moved == (f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "mlartifacts")
    assert store_for(None, [], str(tmp_path / "x.db"))[0] == f"sqlite:///{tmp_path / 'x.db'}"
