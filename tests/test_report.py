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
    assert {f"report/{p.name}" for p in files} == logged
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
    assert {a.path for a in client.list_artifacts(run_id, "report")} == {f"report/{name}" for name in names}
