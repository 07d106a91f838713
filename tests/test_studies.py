"""The five studies of ray_configs/studies/, each run end to end on the demo data and the
session's Ray cluster, then reported from MLflow. Reduced: a few settings of each axis, 8
steps a phase, 2-3 languages, 30 rows per language, and every study in one output_dir, so phases
that two studies share (no intermediate task -> XNLI, MNLI -> XNLI...) train once for all of
them, as they would for a user running the studies one after another.

What each study must show beyond "it ran": its data change reached training (phase records:
rows after subsampling, translated rows, the MLM member, the mixture's heads), its metrics
are in MLflow, and its report sections and PNGs are written (and open). At this size every
cell predicts near chance and the deltas are about zero: these tests check the machinery, not
the studies' findings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from xit_dist.plan.grid import Grid, load_grid
from xit_dist.config.layout import phase_dir

pytestmark = pytest.mark.ray

STUDIES = Path(__file__).resolve().parents[1] / "ray_configs" / "studies"
STEPS = {"max_steps": 8, "log_every_n_steps": 4}  # a phase's cost here is mostly Ray Train's start-up
ROWS_PER_LANGUAGE = 30

# study -> (intermediate settings kept, {target: languages}); run in this order
REDUCED = {
    "data_size": (["none", "mnli-300", "mnli-full"], {"xnli": ["en", "de", "sw"]}),
    "adversarial": (["none", "mnli", "mnli-stress"], {"xnli": ["en", "de", "sw"]}),
    "multilingual": (["none", "pawsx-translate-train", "mnli-en+mlm"], {"xnli": ["en", "de", "sw"]}),
    "task_count": (["none", "mnli", "mnli_then_qqp", "mix2"], {"xnli": ["en", "de", "sw"]}),
    "calibration": (["none"], {"xquad": ["en", "de"]}),  # the perturbations are at evaluation time
}


def reduced_study(name: str, directory: Path, output_dir: Path) -> Path:
    """The study's own file, with fewer axis values, steps, languages and rows."""
    tree = yaml.safe_load((STUDIES / f"{name}.yaml").read_text())
    settings, targets = REDUCED[name]
    tree["base"]["output_dir"] = str(output_dir)
    tree["base"]["evaluation"]["max_examples_per_language"] = ROWS_PER_LANGUAGE
    tree["training"].update(STEPS)
    axes = tree["axes"]
    axes["intermediate"] = {label: axes["intermediate"][label] for label in settings}
    kept = {}
    for target, languages in targets.items():
        kept[target] = axes["target"][target]
        kept[target]["evaluation"]["languages"] = languages
    axes["target"] = kept
    path = directory / f"{name}.yaml"
    path.write_text(f"# xit-dist run {path}\n" + yaml.safe_dump(tree, sort_keys=False))
    return path


@dataclass
class StudyRun:
    grid: Grid
    summary: object          # GridSummary
    report_files: list[Path]
    report_run: str


@pytest.fixture(scope="module")
def studies(ray_cluster, tmp_path_factory) -> dict[str, StudyRun]:
    from xit_dist.run.scheduler import run_grid
    from xit_dist.report.tables import write_report

    directory = tmp_path_factory.mktemp("studies")
    output_dir = directory / "out"
    done = {}
    for name in REDUCED:
        grid = load_grid(reduced_study(name, directory, output_dir))
        summary = run_grid(grid)
        assert not summary.failed, f"{name}: phases failed: {summary.failed}"
        written = write_report(grid.cells[0].spec.tracking.experiment, summary.tracking_uri, out=str(directory / "reports" / name))
        report_run, files = written[grid.name]
        done[name] = StudyRun(grid, summary, files, report_run)
    return done


def record(grid: Grid, label: str, index: int = 0) -> dict:
    """phase.json of the ``index``-th phase of the cell whose intermediate setting is ``label``."""
    cell = next(c for c in grid.cells if c.labels["intermediate"] == label)
    return json.loads((phase_dir(cell.spec, cell.phases[index]) / "phase.json").read_text())


def phase_hash(grid: Grid, label: str, index: int = 0) -> str:
    return next(c for c in grid.cells if c.labels["intermediate"] == label).phases[index].hash


def opens(path: Path) -> bool:
    import matplotlib.image

    image = matplotlib.image.imread(path)
    return image.shape[0] > 100 and image.shape[1] > 100 and float(image[..., :3].std()) > 0.01  # not blank


def files_named(run: StudyRun) -> dict[str, Path]:
    return {path.name: path for path in run.report_files}


def check_common_report(run: StudyRun) -> str:
    """Every study's report: the delta table with each setting's row, per-language heatmaps, all
    PNGs open, all files logged to MLflow. Returns the Markdown."""
    from mlflow.tracking import MlflowClient

    files = files_named(run)
    name = run.grid.name
    markdown = files[f"{name}_report.md"].read_text()
    assert f"# Grid {name}" in markdown and "(complete)" in markdown
    for setting in REDUCED[name][0]:
        assert f"| {setting} ({'score' if setting == 'none' else 'Δ'}) |" in markdown
    pngs = [path for path in run.report_files if path.suffix == ".png"]
    assert pngs and all(opens(path) for path in pngs)
    for target in REDUCED[name][1]:
        assert f"{name}_{target}_languages.png" in files
    logged = {a.path.split("/")[-1] for a in MlflowClient(run.summary.tracking_uri).list_artifacts(run.report_run, "report")}
    assert {path.name for path in run.report_files} <= logged
    return markdown


def test_grids_share_phases_across_studies_in_one_output_dir(studies):
    """data_size trains MNLI -> XNLI and the baseline; the studies after it reuse them."""
    data_size, adversarial, task_count = studies["data_size"].grid, studies["adversarial"].grid, studies["task_count"].grid
    assert phase_hash(adversarial, "mnli") == phase_hash(data_size, "mnli-full") == phase_hash(task_count, "mnli")
    mnli_phase = next(c for c in data_size.cells if c.labels["intermediate"] == "mnli-full").phases[0].id
    assert mnli_phase in studies["data_size"].summary.trained
    assert mnli_phase in studies["adversarial"].summary.reused and mnli_phase not in studies["adversarial"].summary.trained
    baseline = next(c for c in data_size.cells if c.labels["intermediate"] == "none").phases[0].id
    for later in ("adversarial", "multilingual", "task_count"):
        assert baseline in studies[later].summary.reused
    every = [pid for run in studies.values() for pid in run.summary.trained]
    assert len(every) == len(set(every))  # no phase trained twice


def test_data_size_trains_on_the_subsample_and_plots_score_against_size(studies):
    run = studies["data_size"]
    assert record(run.grid, "mnli-300")["train_features"] == 300
    assert record(run.grid, "mnli-full")["train_features"] > 2000  # every demo MNLI row
    markdown = check_common_report(run)
    assert "## Score vs intermediate data size" in markdown
    rows = (files_named(run)["data_size_data_size.csv"]).read_text().splitlines()
    assert [line.split(",")[:3] for line in rows[1:]] == [["xnli", "mnli", "300"], ["xnli", "mnli", "full"]]
    assert opens(files_named(run)["data_size_scaling_xnli.png"])


def test_adversarial_augmentation_is_its_own_phase_with_the_same_rows(studies):
    run = studies["adversarial"]
    assert phase_hash(run.grid, "mnli-stress") != phase_hash(run.grid, "mnli")
    plain, stressed = record(run.grid, "mnli"), record(run.grid, "mnli-stress")
    assert stressed["train_features"] == plain["train_features"]  # mode replace: rows swapped, not added
    assert stressed["init_encoder_fingerprint"] == plain["init_encoder_fingerprint"]  # both from the base model
    check_common_report(run)


def test_multilingual_stage_reads_every_language_and_mixes_in_mlm(studies):
    run = studies["multilingual"]
    from xit_dist.builtin.demo_data import PAWSX_SIZES, PAWSX_TRANSLATED_TRAIN_ROWS

    translated = record(run.grid, "pawsx-translate-train")
    # the English train split plus the demo's translate-train rows of de, es, fr, ja, zh
    assert translated["train_features"] == PAWSX_SIZES["train"] + 5 * PAWSX_TRANSLATED_TRAIN_ROWS
    mlm = record(run.grid, "mnli-en+mlm")["mixture"]
    assert set(mlm["sizes"]) == {"mnli", "mlm"} and mlm["sizes"]["mlm"] > 0
    markdown = check_common_report(run)
    assert "## Robustness by language resource group" in markdown
    table = files_named(run)["multilingual_resource_groups.csv"].read_text().splitlines()
    assert table[0] == "row,target,languages,low,mid,high,transfer_gap,seeds"
    by_row = {line.split(",")[0]: line.split(",") for line in table[1:]}
    assert set(by_row) == set(REDUCED["multilingual"][0])
    # sw is the only low-resource demo language, de high; no mid-resource one among them
    assert all(cells[2] == "XTREME-R" and cells[3] != "–" and cells[4] == "–" and cells[5] != "–" for cells in by_row.values())
    assert opens(files_named(run)["multilingual_resource_groups_xnli.png"])


def test_task_count_sequence_shares_its_first_stage_and_mixture_trains_two_heads(studies):
    run = studies["task_count"]
    assert phase_hash(run.grid, "mnli_then_qqp", 0) == phase_hash(run.grid, "mnli")
    sequence_second = record(run.grid, "mnli_then_qqp", 1)
    assert sequence_second["init_encoder_fingerprint"] == record(run.grid, "mnli")["consolidated_fingerprint"]
    mixture = record(run.grid, "mix2")["mixture"]
    assert set(mixture["sizes"]) == {"mnli", "qqp"} and len(mixture["final_head_fingerprints"]) == 2
    markdown = check_common_report(run)
    assert "| mnli+qqp (Δ) |" not in markdown  # labels are the study's own: mnli_then_qqp, mix2


def test_calibration_reports_ece_per_perturbation_with_reliability_diagrams(studies):
    from mlflow.tracking import MlflowClient

    run = studies["calibration"]
    client = MlflowClient(run.summary.tracking_uri)
    for cell_run in run.summary.cells:
        metrics = client.get_run(cell_run.parent).data.metrics
        for perturbation in ("shuffle", "clause_reorder", "delete20"):
            for metric in ("ece", "brier", "f1", "exact_match"):
                for lang in ("en", "de"):
                    assert f"xquad.{metric}.{lang}.{perturbation}" in metrics
            assert 0.0 <= metrics[f"xquad.ece.avg.{perturbation}"] <= 100.0
        target_run = next(child for child in cell_run.children.values() if client.get_run(child).data.tags.get("xit.kind") == "target")
        diagrams = {a.path.split("/")[-1] for a in client.list_artifacts(target_run, "results")}
        assert {"xquad_reliability_en.png", "xquad_reliability_de.png"} <= diagrams
    markdown = check_common_report(run)
    assert "## Calibration under perturbations" in markdown
    table = files_named(run)["calibration_calibration.csv"].read_text().splitlines()
    assert {tuple(line.split(",")[:3]) for line in table[1:]} == {
        ("none", "xquad", p) for p in ("none", "shuffle", "clause_reorder", "delete20")
    }
    assert opens(files_named(run)["calibration_calibration_xquad.png"])
