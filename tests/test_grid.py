"""Grids: expansion and validation, phases shared between cells (counted from the plan alone),
and a tiny grid on a real local Ray cluster whose first driver is killed after one phase: the
rerun finishes it with one MLflow parent run per cell, a second rerun trains nothing."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.grid_fixtures import TINY_TRAINING, done_phases, tiny_grid_tree, write_grid
from xit_dist.cli import main
from xit_dist.errors import SpecError
from xit_dist.plan.grid import load_grid, shared_phases

ROOT = Path(__file__).resolve().parents[1]


def test_expansion_names_labels_tags_and_training_defaults(tmp_path):
    tree = tiny_grid_tree(tmp_path / "out", name="g", intermediate=["none", "mnli", ["mnli", "qqp"]], targets=["xnli"], seeds=[0, 1], experiment="e")
    tree["axes"]["target"] = {"xnli": {"task": "xnli", "training": {"epochs": 2}}, "pawsx": "pawsx"}
    tree["axes"]["target.training.learning_rate"] = [1.0e-5, 3.0e-5]
    grid = load_grid(write_grid(tmp_path / "g.yaml", tree))
    assert len(grid.cells) == 3 * 2 * 2 * 2
    cell = next(c for c in grid.cells if c.name == "g/mnli+qqp->xnli/seed1/target.training.learning_rate=3e-05")
    assert cell.spec.name == "g.mnli_qqp-to-xnli.seed1.target.training.learning_rate-3e-05"
    assert [s.task for s in cell.spec.intermediate] == ["mnli", "qqp"]
    assert cell.spec.intermediate[1].training.max_steps == TINY_TRAINING["max_steps"]  # the grid's training defaults
    assert cell.spec.target.training.epochs == 2 and cell.spec.target.training.learning_rate == 3.0e-5
    assert cell.spec.seed == 1 and cell.spec.tracking.experiment == "e"
    assert cell.tags["xit.grid"] == "g" and cell.tags["xit.axis.intermediate"] == "mnli+qqp" and cell.tags["xit.axis.seed"] == "1"
    none = next(c for c in grid.cells if c.labels["intermediate"] == "none")
    assert none.spec.intermediate == [] and none.name.startswith("g/none->")


def test_a_bad_cell_is_named_in_one_line_before_anything_starts(tmp_path, capsys):
    tree = tiny_grid_tree(tmp_path / "out", name="g", intermediate=["none", "mnli"], targets=["xnli"], seeds=[0], experiment="e")
    tree["axes"]["intermediate"] = {"none": [], "big": [{"task": "mnli", "training": {"batch_size": 15}}]}
    tree["base"]["distributed"]["num_workers"] = 2
    path = write_grid(tmp_path / "bad.yaml", tree)
    with pytest.raises(SpecError, match=r"bad.yaml: cell g/big->xnli/seed0: .*intermediate.0.training.batch_size"):
        load_grid(path)
    assert main(["run", str(path)]) == 2
    ours = [line for line in capsys.readouterr().err.splitlines() if line.startswith("xit-dist")]  # not Ray's threads
    assert len(ours) == 1 and "cell g/big->xnli/seed0" in ours[0]
    tree["axes"]["lr"] = {"field": "intermediate.0.training.learning_rate", "values": [1.0e-5]}
    tree["axes"]["intermediate"] = ["none"]
    with pytest.raises(SpecError, match=r"cell g/none->xnli/seed0/lr=1e-05: axis lr: intermediate.0: list index '0' out of range"):
        load_grid(write_grid(tmp_path / "bad2.yaml", tree))


def paper_shaped_grid(tmp_path: Path) -> Path:
    """The paper's table shape with tasks that are safe here: 9 intermediate settings + none,
    9 target settings, 3 seeds (settings told apart by their training, as the real ones by task)."""
    intermediate = {"none": []}
    for task in ("mnli", "qqp", "sst2"):
        for lr in (1.0e-5, 2.0e-5, 3.0e-5):
            intermediate[f"{task}-{lr:g}"] = [{"task": task, "training": {"learning_rate": lr}}]
    targets = {f"xnli-e{e}": {"task": "xnli", "training": {"epochs": e}} for e in (1, 2, 3, 4, 5)}
    targets.update({f"pawsx-e{e}": {"task": "pawsx", "training": {"epochs": e}} for e in (1, 2, 3, 4)})
    tree = tiny_grid_tree(tmp_path / "out", name="paper-shape", intermediate=[], targets=["xnli"], seeds=[0, 1, 2], experiment="e")
    tree["axes"].update(intermediate=intermediate, target=targets)
    return write_grid(tmp_path / "paper_shape.yaml", tree)


def test_paper_table_shape_trains_27_intermediate_phases(tmp_path, capsys):
    grid = load_grid(paper_shaped_grid(tmp_path))
    assert len(grid.cells) == 10 * 9 * 3
    phases = shared_phases(grid.cells)
    kinds = Counter(sp.phase.kind for sp in phases)
    assert kinds == {"intermediate": 27, "target": 270}
    # Every intermediate phase serves the 9 targets of its setting and seed.
    assert {len(sp.cells) for sp in phases if sp.phase.kind == "intermediate"} == {9}
    # ...and its hash is the one a spec with any other target or evaluation would give.
    cell = next(c for c in grid.cells if c.labels["intermediate"] == "mnli-1e-05" and c.spec.seed == 2)
    other = cell.spec.model_copy(update={"target": grid.cells[-1].spec.target, "evaluation": cell.spec.evaluation.model_copy(update={"languages": ["zh"]})})
    from xit_dist.plan.phases import build_plan

    assert build_plan(other)[0].hash == cell.phases[0].hash
    # The target phase includes its upstream: same target and seed, other intermediate -> other hash.
    same_target = [c for c in grid.cells if c.labels["target"] == "xnli-e2" and c.spec.seed == 0]
    assert len({c.phases[-1].hash for c in same_target}) == 10
    assert main(["plan", str(tmp_path / "paper_shape.yaml")]) == 0
    out = capsys.readouterr().out
    assert "totals: 297 distinct phases for 270 cells (27 intermediate, 270 target; 513 if every cell trained its own): 0 done, 297 to train" in out
    assert out.count("shared by 9 cell(s)") == 27


def test_intermediate_phase_depends_on_its_own_data_only(tmp_path):
    tree = tiny_grid_tree(tmp_path / "out", name="g", intermediate=["mnli"], targets=["xnli"], seeds=[0], experiment="e")
    grid = load_grid(write_grid(tmp_path / "g.yaml", tree))
    spec = grid.cells[0].spec
    from xit_dist.plan.phases import build_plan

    mirror = tmp_path / "xnli-mirror"
    mirror.mkdir()
    with_target_files = spec.model_copy(update={"data": spec.data.model_copy(update={"task_files": {"xnli": str(mirror)}})})
    before, after = build_plan(spec), build_plan(with_target_files)
    assert after[0].hash == before[0].hash  # the MNLI phase does not read XNLI's files
    assert after[1].hash != before[1].hash  # the XNLI phase does
    seeded = spec.model_copy(update={"seed": 1})
    assert build_plan(seeded)[0].hash != before[0].hash


def test_paper_config_validates_and_shares_intermediate_phases(capsys):
    path = ROOT / "ray_configs" / "paper" / "table.yaml"
    grid = load_grid(path)
    kinds = Counter(sp.phase.kind for sp in shared_phases(grid.cells))
    intermediate_settings = [v.label for a in grid.axes if a.name == "intermediate" for v in a.values if v.label != "none"]
    assert kinds["intermediate"] == 3 * len(intermediate_settings)
    assert {c.spec.model.name_or_path for c in grid.cells} == {"FacebookAI/xlm-roberta-large"}


def test_submit_validates_the_whole_grid_and_submits_one_job():
    from xit_dist.run.submit import build_submission
    from xit_dist.errors import XitError

    paper = ROOT / "ray_configs" / "paper" / "table.yaml"
    with pytest.raises(XitError, match="output_dir xit_runs/paper: a relative path"):
        build_submission(str(paper), [])
    entrypoint, _ = build_submission(str(paper), ["output_dir=/shared/xit-runs/paper"])
    assert entrypoint == "python -m xit_dist.cli run ray_configs/paper/table.yaml --set output_dir=/shared/xit-runs/paper --set distributed.address=auto"


# ------------------------------------------------------------------------ on a real cluster


TRAINED_ON = {"xnli": {("nyu-mll/glue/mnli/train", "training")}, "pawsx": {("google/xtreme/PAWS-X.en/train", "training")}}
EVALUATED_ON = {"xnli": {(f"google/xtreme/XNLI/test[{lang}]", "evaluation") for lang in ("en", "de")},
                "pawsx": {(f"google/xtreme/PAWS-X.{lang}/test", "evaluation") for lang in ("en", "de")}}


@pytest.mark.ray
def test_interrupted_grid_reruns_to_one_mlflow_run_per_cell(finished_grid):
    from mlflow.tracking import MlflowClient

    grid = load_grid(finished_grid.path)
    summary = finished_grid.rerun
    assert finished_grid.done_at_kill, "the first driver was killed before any phase finished"
    # Phases the killed driver finished were reused as they were, never trained again.
    assert set(finished_grid.done_at_kill) <= set(summary.reused)
    assert not set(finished_grid.done_at_kill) & set(summary.trained)
    after = done_phases(finished_grid.output_dir)
    assert all(after[pid] == mtime for pid, mtime in finished_grid.done_at_kill.items())
    every_phase = {sp.phase.id for sp in shared_phases(grid.cells)}
    assert len(every_phase) == 1 + 4  # MNLI (shared by both targets) + one target phase per cell
    assert sorted(summary.trained + summary.reused) == sorted(every_phase)  # each exactly once

    client = MlflowClient(summary.tracking_uri)
    experiment = client.get_experiment_by_name("grid-tests").experiment_id
    parents = client.search_runs([experiment], "tags.`xit.grid` = 'tiny'")
    assert sorted(r.data.tags["xit.cell"] for r in parents) == sorted(c.name for c in grid.cells)
    for parent, cell in ((p, next(c for c in grid.cells if c.name == p.data.tags["xit.cell"])) for p in parents):
        assert parent.info.status == "FINISHED"
        target = cell.spec.target.task
        assert {f"{target}.accuracy.en", f"{target}.accuracy.de", f"{target}.accuracy.avg"} <= set(parent.data.metrics)
        children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        assert sorted(c.data.tags["xit.phase_hash"] for c in children) == sorted(p.hash for p in cell.phases)
        assert all(c.info.status == "FINISHED" for c in children)
        read = {child.data.tags["xit.task"]: {(d.dataset.name, d.tags[0].value) for d in child.inputs.dataset_inputs} for child in children}
        if "mnli" in read:  # the shared phase, in both cells
            assert read["mnli"] == {("nyu-mll/glue/mnli/train", "training")}
        assert read[target] == {*TRAINED_ON[target], *EVALUATED_ON[target]}  # issue 15: each phase run lists what it read
        assert {d.dataset.name for d in parent.inputs.dataset_inputs} == {name for pairs in read.values() for name, _ in pairs}
    runs = [r for r in client.search_runs([experiment]) if "xit.report_for" not in r.data.tags]  # test_report adds its own
    assert len(runs) == 4 + 2 * 2 + 2 * 1  # parents + (MNLI, target) children + target children


@pytest.mark.ray
def test_shared_phase_trains_once_and_phases_run_concurrently(finished_grid):
    from mlflow.tracking import MlflowClient

    summary = finished_grid.rerun
    # Two one-worker phases fit the two CPUs: the rerun trains two phases at the same time.
    assert summary.peak_running == 2
    running, most = 0, 0
    for _, kind, job in summary.events:
        if not job.startswith("eval:"):
            running += 1 if kind == "start" else -1
            most = max(most, running)
    assert most == 2
    client = MlflowClient(summary.tracking_uri)
    experiment = client.get_experiment_by_name("grid-tests").experiment_id
    mnli_children = client.search_runs([experiment], "tags.`xit.task` = 'mnli'")
    by_hash: dict[str, list] = {}
    for child in mnli_children:
        by_hash.setdefault(child.data.tags["xit.phase_hash"], []).append(child)
    assert len(by_hash) == 1 and all(len(runs) == 2 for runs in by_hash.values())  # one phase, a child in both targets' cells
    for runs in by_hash.values():
        trainer = [r for r in runs if "xit.trained_in" not in r.data.tags]
        follower = [r for r in runs if "xit.trained_in" in r.data.tags]
        assert len(trainer) == 1 and len(follower) == 1
        # Its training metrics went to one cell's run (steps before the kill may be there twice:
        # the killed driver's attempt, then the rerun's)...
        history = client.get_metric_history(trainer[0].info.run_id, "train.loss")
        assert {m.step for m in history} == set(range(5, 91, 5))
        assert client.get_metric_history(follower[0].info.run_id, "train.loss") == []
        # ...and the rerun trained it at most once (not once per cell).
        assert summary.trained.count(trainer[0].data.tags["xit.phase_id"]) <= 1


@pytest.mark.ray
def test_second_run_trains_nothing(finished_grid):
    from mlflow.tracking import MlflowClient

    from xit_dist.run.scheduler import run_grid

    before = done_phases(finished_grid.output_dir)
    ray_runs = sorted(p.name for p in (finished_grid.output_dir / "ray").iterdir())
    first = finished_grid.rerun
    again = run_grid(load_grid(finished_grid.path))
    assert again.trained == [] and sorted(again.reused) == sorted(before)
    assert done_phases(finished_grid.output_dir) == before
    assert sorted(p.name for p in (finished_grid.output_dir / "ray").iterdir()) == ray_runs  # no new Ray Train run
    assert [c.parent for c in again.cells] == [c.parent for c in first.cells]
    assert [c.results.per_language for c in again.cells] == [c.results.per_language for c in first.cells]
    client = MlflowClient(again.tracking_uri)
    experiment = client.get_experiment_by_name("grid-tests").experiment_id
    assert len(client.search_runs([experiment], "tags.`xit.grid` = 'tiny'")) == 4


def test_max_concurrent_phases_is_for_grids_only(capsys):
    assert main(["run", str(ROOT / "ray_configs" / "demo.yaml"), "--max-concurrent-phases", "2"]) == 2
    assert "--max-concurrent-phases: only for a grid" in capsys.readouterr().err
