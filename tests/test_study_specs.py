"""The five study grids in ray_configs/studies/: each expands and validates on the demo data,
opens with the command that runs it, and shares the phases it should. No training here."""

from __future__ import annotations

from pathlib import Path

import pytest

from xit_dist.plan.grid import load_grid, shared_phases

STUDIES = Path(__file__).resolve().parents[1] / "ray_configs" / "studies"
NAMES = ("multilingual", "data_size", "adversarial", "calibration", "task_count")


@pytest.mark.parametrize("name", NAMES)
def test_study_grid_expands_on_the_demo_data(name):
    path = STUDIES / f"{name}.yaml"
    assert path.read_text().startswith(f"# xit-dist run ray_configs/studies/{name}.yaml")
    grid = load_grid(path)
    assert grid.study == name
    for cell in grid.cells:
        assert cell.spec.data.local_dir == "builtin:demo" and cell.spec.model.name_or_path == "builtin:xlmr-tiny"
    labels = {cell.labels["intermediate"] for cell in grid.cells}
    assert "none" in labels  # every study compares with no intermediate training


def phases_by_label(grid) -> dict[str, list[str]]:
    """intermediate label -> hashes of its intermediate phases (in order)."""
    out = {}
    for cell in grid.cells:
        out[cell.labels["intermediate"]] = [p.hash for p in cell.phases if p.kind == "intermediate"]
    return out


def test_data_size_study_sizes_are_distinct_phases():
    grid = load_grid(STUDIES / "data_size.yaml")
    phases = phases_by_label(grid)
    assert len({tuple(h) for label, h in phases.items() if label.startswith("mnli")}) == 3
    sizes = {cell.labels["intermediate"]: cell.spec.intermediate[0].subsample for cell in grid.cells if cell.spec.intermediate}
    assert sizes["mnli-300"].size == 300 and sizes["mnli-full"] is None


def test_task_count_study_shares_the_first_stage_of_a_sequence():
    grid = load_grid(STUDIES / "task_count.yaml")
    phases = phases_by_label(grid)
    assert phases["mnli_then_qqp"][0] == phases["mnli"][0]  # "mnli" then "qqp": the mnli phase is trained once
    assert phases["qqp_then_mnli"][0] == phases["qqp"][0]
    assert phases["mnli_then_qqp"][1] != phases["qqp"][0]  # qqp after mnli starts elsewhere: another phase
    mixtures = {label: h for label, h in phases.items() if label.startswith("mix")}
    assert len({tuple(h) for h in mixtures.values()}) == 4
    intermediate = {p.hash for p in shared_phases(grid.cells) if p.phase.kind == "intermediate"}
    assert len(intermediate) == 8  # mnli, qqp, qqp-after-mnli, mnli-after-qqp, 4 mixtures


def test_calibration_study_evaluates_perturbations_with_calibration():
    grid = load_grid(STUDIES / "calibration.yaml")
    for cell in grid.cells:
        evaluation = cell.spec.evaluation
        assert evaluation.calibration
        assert [p.name for p in evaluation.perturbations] == ["shuffle", "clause_reorder", "delete20"]
        assert cell.spec.target.task in ("xquad", "mlqa")
