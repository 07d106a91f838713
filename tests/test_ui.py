"""``xit-dist ui`` in a real browser: the command starts ``mlflow server`` on a store holding a
search (a parent run, trials nested under it, per-step and per-language metrics), two seed runs
of one setting with their data sets and their summary run, and a report with its logged tables;
headless Chromium (Debian's ``chromium``, driven by playwright, no browser download) opens the
experiment page ``xit-dist ui`` prints (the runs table, not MLflow's GenAI overview), filters the
summary runs, and opens the comparison of the trials and the report's table. Screenshots land
in the test's temporary directory."""

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
    seed_runs(tracker)
    from xit_dist.report.tables import write_report

    report_run = write_report(EXPERIMENT, uri, None, str(root / "report"))["runs"][0]
    return uri, tracker.experiment_id, trials, report_run


DATASET = "nyu-mll/glue/mnli/train"


def seed_runs(tracker: Tracker) -> None:
    """Two seeds of mnli -> xnli, as ``run`` leaves them (results, the data read), and their summary."""
    from xit_dist.run.runs import update_seed_summary

    for seed, (en, de) in enumerate([(55.0, 47.5), (57.0, 48.5)]):
        run = tracker.parent_run(f"demo-seed{seed}", f"grid-fingerprint-{seed}")
        tracker.set_tags(run, {"xit.setting": "demo-setting", "xit.seed": str(seed), "xit.target": "xnli", "xit.intermediate": "mnli"})
        tracker.log_metrics(run, {"xnli.accuracy.en": en, "xnli.accuracy.de": de, "xnli.accuracy.avg": (en + de) / 2})
        tracker.log_datasets(run, [{"name": DATASET, "hub_id": "nyu-mll/glue", "config": "mnli", "split": "train", "source": "hub",
                                    "digest": f"{seed:016d}", "revision": "main", "context": "training"}])
        tracker.finish(run)
        update_seed_summary(tracker, run)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def ui_server(tmp_path):
    """``xit-dist ui`` as a user starts it; yields (url, experiment id, trial run ids, the
    experiment's page it printed, the report run)."""
    uri, experiment_id, trials, report_run = build_store(tmp_path / "store")
    process = subprocess.Popen(
        [sys.executable, "-m", "xit_dist.cli", "ui", "--store", uri, "--port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url, page, lines = None, None, []
    timer = threading.Timer(150, process.kill)  # a server that never comes up fails the test
    timer.start()
    for line in process.stdout:
        lines.append(line)
        found = re.search(r"MLflow UI: (http://127\.0\.0\.1:\d+)", line)
        url = url or (found and found.group(1))
        listed = re.search(rf"experiment {EXPERIMENT}: (\S+)", line)
        if listed:
            page = listed.group(1)
            break
    timer.cancel()
    threading.Thread(target=lambda: [lines.append(line) for line in process.stdout], daemon=True).start()
    assert url and page, "xit-dist ui never printed its URL and the experiment's page:\n" + "".join(lines)
    yield url, experiment_id, trials, page, report_run
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, "".join(lines)


def test_ui_shows_the_search_runs_and_per_language_metrics(ui_server, tmp_path):
    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    url, experiment_id, trials, experiment_page, report_run = ui_server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(PAGE_TIMEOUT_MS)

        # Without the view: MLflow 3.17 opens a fresh browser on its GenAI overview (for the note).
        page.goto(f"{url}/#/experiments/{experiment_id}")
        page.wait_for_timeout(5000)
        page.screenshot(path=str(tmp_path / "mlflow_default_view.png"))
        # The experiment page `xit-dist ui` printed: the runs table, not the GenAI overview.
        page.goto(experiment_page)
        parent_row = page.locator(".ag-row").filter(has_text=f"search:{SEARCH}")
        parent_row.wait_for()
        assert "/runs" in page.url
        assistant = page.locator('button[data-component-id="mlflow.assistant.chat_panel.close"]')
        if assistant.is_visible():  # MLflow's chat side panel: not ours, and it hides half the page
            assistant.click()
        assert page.get_by_text("demo-seed0", exact=True).is_visible()  # the seed runs beside it
        page.get_by_text(DATASET).first.wait_for()  # the Dataset column
        page.screenshot(path=str(tmp_path / "mlflow_runs.png"))
        assert not page.get_by_text(trial_run_name(0)).is_visible()  # nested: hidden until expanded
        parent_row.locator("button").first.click()
        for number in range(len(LEARNING_RATES)):
            page.get_by_text(trial_run_name(number), exact=True).wait_for()
        # The chart view: one chart per metric, per-language ones included (charts below the
        # fold are not drawn: a tall page holds them all).
        page.set_viewport_size({"width": 1600, "height": 4000})
        page.locator("label").filter(has=page.locator('input[value="CHART"]')).click()
        for metric in ("dev.xnli.accuracy.de", "xnli.accuracy.de", "dev.accuracy", "train.loss"):
            page.get_by_text(metric, exact=True).first.wait_for()
        page.screenshot(path=str(tmp_path / "mlflow_experiment.png"))
        page.set_viewport_size({"width": 1600, "height": 1000})

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
        check_summary_filter(page, experiment_page, tmp_path)
        check_report_table(page, url, experiment_id, report_run, tmp_path)
        browser.close()
    print(f"screenshots in {tmp_path}: mlflow_runs.png, mlflow_experiment.png, mlflow_compare.png, mlflow_summary.png, mlflow_table.png")


def check_summary_filter(page, experiment_page: str, tmp_path: Path) -> None:
    """Filtering on the summary kind leaves the summary run, with its mean columns."""
    page.set_viewport_size({"width": 2400, "height": 1000})
    page.goto(experiment_page)
    search = page.get_by_placeholder(re.compile("metrics.rmse"))
    search.fill('tags.`xit.kind` = "summary"')
    search.press("Enter")
    page.locator(".ag-row").filter(has_text="summary:mnli->xnli").wait_for()
    for other in ("demo-seed0", "demo-seed1", f"search:{SEARCH}", "report:runs"):  # filtered out
        assert page.locator(".ag-row").filter(has_text=other).count() == 0
    page.screenshot(path=str(tmp_path / "mlflow_summary.png"))
    page.get_by_text("summary:mnli->xnli", exact=True).first.click()  # the run's page: its metrics
    page.get_by_text("1.0606601717798212", exact=True).wait_for()  # the std of the seeds' averages, 51.25 and 52.75
    assert re.search(r"xnli\.accuracy\.avg\.mean\s+52\s", page.inner_text("body"))  # and their mean
    page.screenshot(path=str(tmp_path / "mlflow_summary_run.png"))


def check_report_table(page, url: str, experiment_id: str, report_run: str, tmp_path: Path) -> None:
    """The report run's logged table (``log_table``) renders in the artifact view, as a table."""
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.goto(f"{url}/#/experiments/{experiment_id}/runs/{report_run}/artifacts")
    page.get_by_text("report", exact=True).first.click()
    page.get_by_text("runs_table.json", exact=True).first.click()
    page.get_by_text("score_mean").first.wait_for()  # a column header of the table view
    page.get_by_text("mnli", exact=True).first.wait_for()
    page.screenshot(path=str(tmp_path / "mlflow_table.png"))
