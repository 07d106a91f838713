"""``xit-dist report``: tables and plots from MLflow alone. A grid still running (runs logged
directly into a real sqlite MLflow store, one seed without results) gives a marked partial
report; the tiny grid trained on Ray gives a table equal to the metrics its runs logged."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest

from xit_dist.cli import main
from xit_dist.report.tables import report_section, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GRID_TABLES = ("table", "benchmark", "per_language")  # the tables every report logs with log_table


def log_cell(client, experiment_id: str, grid: str, index: int, intermediate: str, target: str, seed: int, metrics: dict[str, float] | None, total: int) -> str:
    tags = {
        "xit.grid": grid, "xit.cell": f"{grid}/{intermediate}->{target}/seed{seed}", "xit.cell_index": str(index), "xit.grid_cells": str(total),
        "xit.seed": str(seed), "xit.target": target, "xit.intermediate": intermediate,
        "xit.axis.intermediate": intermediate, "xit.axis.target": target, "xit.axis.seed": str(seed),
    }
    run_id = client.create_run(experiment_id, run_name=tags["xit.cell"], tags=tags).info.run_id
    for key, value in (metrics or {}).items():
        client.log_metric(run_id, key, value)
    client.set_terminated(run_id, "FINISHED" if metrics else "RUNNING")
    return run_id


def xnli_metrics(en: float, de: float) -> dict[str, float]:
    return {"xnli.accuracy.en": en, "xnli.accuracy.de": de, "xnli.accuracy.avg": (en + de) / 2}


def xquad_metrics(f1_en: float, em_en: float, f1_de: float, em_de: float) -> dict[str, float]:
    return {"xquad.f1.en": f1_en, "xquad.exact_match.en": em_en, "xquad.f1.de": f1_de, "xquad.exact_match.de": em_de}


@pytest.fixture()
def running_grid(tmp_path):
    """none / mnli x xnli / xquad x seeds 0-2; mnli -> xquad seed 2 has no results yet."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("report-tests", artifact_location=(tmp_path / "artifacts").as_uri())
    values = {
        ("none", "xnli"): [(70.0, 60.0), (72.0, 61.0), (71.0, 59.0)],
        ("mnli", "xnli"): [(74.0, 66.0), (75.0, 64.0), (73.0, 65.0)],
        ("none", "xquad"): [(80.0, 70.0, 60.0, 40.0), (82.0, 71.0, 61.0, 42.0), (81.0, 69.0, 59.0, 41.0)],
        ("mnli", "xquad"): [(84.0, 72.0, 66.0, 45.0), (83.0, 70.0, 63.0, 44.0), None],
    }
    index = 0
    for (intermediate, target), per_seed in values.items():
        for seed, numbers in enumerate(per_seed):
            metrics = None if numbers is None else (xnli_metrics(*numbers) if target == "xnli" else xquad_metrics(*numbers))
            log_cell(client, experiment_id, "g", index, intermediate, target, seed, metrics, total=12)
            index += 1
    return uri, values, tmp_path


def read_table(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open() as handle:
        return {(row["row"], row["target"]): row for row in csv.DictReader(handle)}


def test_partial_grid_report_marks_missing_seeds_and_pairs_seeds(running_grid):
    uri, values, tmp_path = running_grid
    written = write_report("report-tests", uri, None, str(tmp_path / "report"))
    run_id, files = written["g"]
    table = read_table(tmp_path / "report" / "g_table.csv")

    def xnli_score(numbers):
        return (numbers[0] + numbers[1]) / 2

    def xquad_score(numbers):  # XTREME: (mean F1 + mean EM) / 2
        f1_en, em_en, f1_de, em_de = numbers
        return ((f1_en + f1_de) / 2 + (em_en + em_de) / 2) / 2

    deltas = [xnli_score(m) - xnli_score(n) for m, n in zip(values[("mnli", "xnli")], values[("none", "xnli")])]
    row = table[("mnli", "xnli")]
    assert float(row["delta_mean"]) == pytest.approx(statistics.fmean(deltas), abs=1e-4)
    assert float(row["delta_std"]) == pytest.approx(statistics.stdev(deltas), abs=1e-4)
    base = [xnli_score(n) for n in values[("none", "xnli")]]
    assert float(table[("none", "xnli")]["score_mean"]) == pytest.approx(statistics.fmean(base), abs=1e-4)
    partial = table[("mnli", "xquad")]
    assert (partial["seeds_done"], partial["seeds_expected"]) == ("2", "3")
    paired = [xquad_score(m) - xquad_score(n) for m, n in zip(values[("mnli", "xquad")][:2], values[("none", "xquad")][:2])]
    assert float(partial["delta_mean"]) == pytest.approx(statistics.fmean(paired), abs=1e-4)

    markdown = (tmp_path / "report" / "g_report.md").read_text()
    assert "partial: 11/12 cells have results" in markdown
    assert f"{statistics.fmean(paired):+.2f} ± {statistics.stdev(paired):.2f} (2/3 seeds)" in markdown
    assert f"| mnli (Δ) | {statistics.fmean(deltas):+.2f} ± {statistics.stdev(deltas):.2f} |" in markdown
    # XTREME over 2 of its 9 tasks and 2 of each task's languages: marked, not passed off as a benchmark score.
    assert "| xtreme | none | " in markdown and "2/9 |" in markdown and "xnli 2/15 languages" in markdown
    for path in files:
        assert path.is_file() and path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    logged = {a.path for a in client.list_artifacts(run_id, "report")}
    assert {f"report/{p.name}" for p in files} | {f"report/g_{t}.json" for t in GRID_TABLES} == logged
    assert client.get_run(run_id).data.tags["xit.report_for"] == "g"
    # A second report replaces the artifacts of the same report run.
    assert write_report("report-tests", uri, "g", str(tmp_path / "report"))["g"][0] == run_id


def test_study_sections_run_for_their_study_only(running_grid):
    uri, _, tmp_path = running_grid
    from mlflow.tracking import MlflowClient
    from xit_dist.report.tables import SECTIONS, Section

    seen = []

    @report_section("scaling")
    def scaling_curve(report):
        seen.append(report.grid)
        return Section("Scaling", "curve here")

    try:
        write_report("report-tests", uri, None, str(tmp_path / "r1"))
        assert seen == []  # grid g has no study tag
        client = MlflowClient(uri)
        for run in client.search_runs([client.get_experiment_by_name("report-tests").experiment_id], "tags.`xit.grid` = 'g'"):
            client.set_tag(run.info.run_id, "xit.study", "scaling")
        write_report("report-tests", uri, None, str(tmp_path / "r2"))
        assert seen == ["g"] and "## Scaling" in (tmp_path / "r2" / "g_report.md").read_text()
    finally:
        SECTIONS["scaling"].remove(scaling_curve)


def test_report_of_an_unknown_experiment_is_one_line(running_grid, capsys):
    uri, _, tmp_path = running_grid
    assert main(["report", "nope", "--tracking-uri", uri, "--out", str(tmp_path / "x")]) == 2
    # Only our own line counts: Ray's background threads in this test process may log to stderr too.
    ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("xit-dist")]
    assert len(ours) == 1 and "no MLflow experiment 'nope'" in ours[0]


@pytest.mark.ray
def test_report_of_the_trained_grid_equals_its_logged_metrics(finished_grid, tmp_path):
    from mlflow.tracking import MlflowClient

    written = write_report(str(finished_grid.path), None, None, str(tmp_path))
    run_id, files = written["tiny"]
    client = MlflowClient(finished_grid.rerun.tracking_uri)
    experiment = client.get_experiment_by_name("grid-tests").experiment_id
    avg: dict[tuple[str, str, str], float] = {}
    for run in client.search_runs([experiment], "tags.`xit.grid` = 'tiny'"):
        tags = run.data.tags
        target = tags["xit.target"]
        avg[(tags["xit.axis.intermediate"], target, tags["xit.seed"])] = run.data.metrics[f"{target}.accuracy.avg"]
    table = read_table(tmp_path / "tiny_table.csv")
    for target in ("xnli", "pawsx"):  # one seed: the delta is the difference of the two runs' averages
        row = table[("mnli", target)]
        assert (row["seeds_done"], row["seeds_expected"]) == ("1", "1")
        assert float(row["delta_mean"]) == pytest.approx(avg[("mnli", target, "0")] - avg[("none", target, "0")], abs=1e-4)
        assert row["delta_std"] == ""  # no spread from one seed
        assert float(table[("none", target)]["score_mean"]) == pytest.approx(avg[("none", target, "0")], abs=1e-4)
    # The demo's MNLI is learnable and transfers: the table shows the intermediate task's gain on XNLI.
    assert float(table[("mnli", "xnli")]["delta_mean"]) > 5.0
    names = {p.name for p in files}
    assert {"tiny_report.md", "tiny_table.csv", "tiny_deltas.png", "tiny_xnli_languages.png", "tiny_pawsx_languages.png", "tiny_benchmark.png"} <= names
    for path in files:
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000
    tables = {f"report/tiny_{t}.json" for t in GRID_TABLES}
    assert {a.path for a in client.list_artifacts(run_id, "report")} == {f"report/{name}" for name in names} | tables


# ---------------------------------------------------------------------------------- single runs and MLflow tables


def log_single_run(client, experiment_id: str, intermediate: str, target: str, seed: int | None, metrics: dict[str, float] | None,
                   start: int, extra_tags: dict[str, str] | None = None) -> str:
    """A top-level run as ``xit-dist run spec.yaml`` leaves it: target and intermediate tags, the
    seed as a tag (``seed`` None: only as the spec's param), no grid tags."""
    tags = {"xit.target": target, "xit.intermediate": intermediate, **({"xit.seed": str(seed)} if seed is not None else {}), **(extra_tags or {})}
    run_id = client.create_run(experiment_id, start_time=start, run_name=f"{intermediate}-to-{target}", tags=tags).info.run_id
    client.log_param(run_id, "seed", "0")
    for key, value in (metrics or {}).items():
        client.log_metric(run_id, key, value)
    if metrics:
        client.set_terminated(run_id, "FINISHED", end_time=start + 500)
    return run_id


@pytest.fixture()
def single_runs(tmp_path):
    """none -> xnli and mnli -> xnli (seed 0), the latter run three times (an older finished run,
    the latest finished one, a newer one still running); mnli,squad -> xnli with its seed only as
    a param; and runs that are no cells: a phase's child run and a summary run."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("single-runs", artifact_location=(tmp_path / "artifacts").as_uri())
    none = log_single_run(client, experiment_id, "none", "xnli", 0, xnli_metrics(70.0, 60.0), 1000)
    older = log_single_run(client, experiment_id, "mnli", "xnli", 0, xnli_metrics(50.0, 50.0), 2000)
    latest = log_single_run(client, experiment_id, "mnli", "xnli", 0, xnli_metrics(74.0, 66.0), 3000)
    running = log_single_run(client, experiment_id, "mnli", "xnli", 0, None, 4000)
    log_single_run(client, experiment_id, "mnli,squad", "xnli", None, xnli_metrics(71.0, 63.0), 5000)
    log_single_run(client, experiment_id, "mnli", "xnli", 0, xnli_metrics(10.0, 10.0), 6000, {"mlflow.parentRunId": latest})
    log_single_run(client, experiment_id, "mnli", "xnli", 0, xnli_metrics(99.0, 99.0), 7000, {"xit.kind": "summary"})
    return uri, client, experiment_id, tmp_path, {"none": none, "older": older, "latest": latest, "running": running}


def test_report_of_single_runs_compares_them_with_the_none_run(single_runs):
    uri, client, experiment_id, tmp_path, runs = single_runs
    run_id, files = write_report("single-runs", uri, None, str(tmp_path / "report"))["runs"]
    table = read_table(tmp_path / "report" / "runs_table.csv")
    assert set(table) == {("none", "xnli"), ("mnli", "xnli"), ("mnli+squad", "xnli")}  # no child or summary run among them
    avg = {name: client.get_run(runs[name]).data.metrics["xnli.accuracy.avg"] for name in ("none", "latest")}
    assert float(table[("mnli", "xnli")]["delta_mean"]) == pytest.approx(avg["latest"] - avg["none"], abs=1e-4)
    assert (table[("mnli", "xnli")]["seeds_done"], table[("mnli", "xnli")]["seeds_expected"]) == ("1", "1")
    assert float(table[("none", "xnli")]["score_mean"]) == pytest.approx(avg["none"], abs=1e-4)
    assert float(table[("mnli+squad", "xnli")]["delta_mean"]) == pytest.approx(67.0 - 65.0, abs=1e-4)  # seed from its param, paired
    markdown = (tmp_path / "report" / "runs_report.md").read_text()
    assert "# Single runs" in markdown and "3 cells in MLflow (complete)" in markdown
    note = next(line for line in markdown.splitlines() if line.startswith("- mnli -> xnli, seed 0: 3 runs"))
    assert runs["latest"] in note.split("leaves out")[0] and runs["older"] in note and runs["running"] in note
    assert f"| mnli (Δ) | {avg['latest'] - avg['none']:+.2f} |" in markdown
    report_run = client.get_run(run_id)
    assert report_run.data.tags["xit.report_for"] == "runs" and report_run.data.tags["xit.kind"] == "report"
    logged = {a.path for a in client.list_artifacts(run_id, "report")}
    assert {f"report/{p.name}" for p in files} | {f"report/runs_{t}.json" for t in GRID_TABLES} == logged


def test_report_tables_are_mlflow_tables_replaced_on_a_rerun(single_runs):
    import json

    import pandas as pd

    uri, client, experiment_id, tmp_path, runs = single_runs
    first = write_report("single-runs", uri, None, str(tmp_path / "r1"))["runs"][0]
    assert write_report("single-runs", uri, None, str(tmp_path / "r2"))["runs"][0] == first
    assert len(client.search_runs([experiment_id], "tags.`xit.report_for` = 'runs'")) == 1
    # As client.load_table reads it (which finds runs through the fluent API's tracking URI, not the client's).
    loaded = pd.read_json(client.download_artifacts(first, "report/runs_table.json", str(tmp_path / "dl")), orient="split")
    assert len(loaded) == 3  # one row per setting: the rerun replaced the table, it did not append to it
    by_row = {row["row"]: row for row in loaded.to_dict("records")}
    expected = read_table(tmp_path / "r2" / "runs_table.csv")
    for row in ("mnli", "mnli+squad"):
        assert by_row[row]["delta_mean"] == pytest.approx(float(expected[(row, "xnli")]["delta_mean"]), abs=1e-4)
    assert by_row["none"]["score_mean"] == pytest.approx(65.0) and pd.isna(by_row["none"]["delta_mean"])  # the baseline: no delta
    benchmark = json.loads(Path(client.download_artifacts(first, "report/runs_benchmark.json", str(tmp_path / "dl"))).read_text())
    assert benchmark["columns"][:3] == ["benchmark", "row", "score"] and len(benchmark["data"]) == 6  # xtreme, xtreme-r x 3 rows
    listed = json.loads(client.get_run(first).data.tags["mlflow.loggedArtifacts"])
    assert sorted(entry["path"] for entry in listed) == sorted(f"report/runs_{t}.json" for t in GRID_TABLES)


def test_summary_runs_with_grid_tags_leave_the_grid_report_as_it_was(running_grid):
    from mlflow.tracking import MlflowClient

    uri, _, tmp_path = running_grid
    write_report("report-tests", uri, "g", str(tmp_path / "before"))
    client = MlflowClient(uri)
    experiment_id = client.get_experiment_by_name("report-tests").experiment_id
    for intermediate in ("none", "mnli"):  # a summary run per setting, carrying the grid's tags (a cell's name too, at worst)
        run_id = log_cell(client, experiment_id, "g", 0, intermediate, "xnli", 0, xnli_metrics(1.0, 1.0), total=12)
        client.set_tag(run_id, "xit.kind", "summary")
    write_report("report-tests", uri, "g", str(tmp_path / "after"))
    for name in ("g_table.csv", "g_benchmark.csv", "g_report.md"):
        assert (tmp_path / "after" / name).read_text() == (tmp_path / "before" / name).read_text()


def test_report_of_an_experiment_without_grid_or_single_runs_is_one_line(tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("empty", artifact_location=(tmp_path / "artifacts").as_uri())
    client.create_run(experiment_id, tags={"xit.kind": "search", "xit.target": "xnli"})  # a search run: no cell
    assert main(["report", "empty", "--tracking-uri", uri, "--out", str(tmp_path / "x")]) == 2
    ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("xit-dist")]
    assert len(ours) == 1 and "has neither grid runs nor single runs" in ours[0]
