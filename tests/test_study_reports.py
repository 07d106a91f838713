"""The studies' report sections (xit_dist/report/studies.py) on hand-made grid cells: the
numbers in their tables by hand, and PNGs that open. No Ray, no MLflow store."""

from __future__ import annotations

from types import SimpleNamespace

from xit_dist.report.tables import CellResult, GridReport
from xit_dist.report.studies import calibration_table, drop_by_resource_group, scaling_curve


class _Client:
    """What the sections read from MLflow besides the cells: a run's params."""

    def __init__(self, params: dict[str, dict[str, str]]):
        self.params = params

    def get_run(self, run_id):
        return SimpleNamespace(data=SimpleNamespace(params=self.params.get(run_id, {})))


def cell(run_id: str, intermediate: str, target: str, seed: str, metrics: dict[str, float]) -> CellResult:
    return CellResult(run_id, f"g/{intermediate}->{target}/seed{seed}", 0, {"intermediate": intermediate, "target": target, "seed": seed},
                      target, intermediate, seed, "FINISHED", metrics)


def report_of(cells, tmp_path, study, params=None) -> GridReport:
    return GridReport("g", study, cells, len(cells), tmp_path, _Client(params or {}), "0")


def opens(path) -> bool:
    import matplotlib.image

    return matplotlib.image.imread(path).shape[0] > 100


def test_scaling_curve_orders_sizes_and_puts_full_last(tmp_path):
    cells = [cell("b", "none", "xnli", "0", {"xnli.accuracy.en": 40.0})]
    params = {}
    for run, size, score in (("s1", "1000", 50.0), ("s2", "300", 45.0), ("s3", None, 60.0), ("s4", "1000", 54.0)):
        cells.append(cell(run, f"mnli-{size or 'full'}", "xnli", "0" if run != "s4" else "1", {"xnli.accuracy.en": score}))
        params[run] = {"intermediate.0.task": "mnli", **({"intermediate.0.subsample.size": size} if size else {})}
    section = scaling_curve(report_of(cells, tmp_path, "data_size", params))
    rows = (tmp_path / "g_data_size.csv").read_text().splitlines()
    assert rows[1:] == ["xnli,mnli,300,45.0000,1", "xnli,mnli,1000,52.0000,2", "xnli,mnli,full,60.0000,1"]
    assert opens(tmp_path / "g_scaling_xnli.png") and section.title.startswith("Score vs")


def test_calibration_table_reads_the_perturbation_keys(tmp_path):
    metrics = {"xquad.f1.en": 50.0, "xquad.exact_match.en": 40.0, "xquad.f1.avg": 50.0, "xquad.ece.avg": 10.0, "xquad.brier.avg": 20.0,
               "xquad.f1.avg.shuffle": 30.0, "xquad.ece.avg.shuffle": 25.0, "xquad.brier.avg.shuffle": 30.0, "xquad.f1.en.shuffle": 30.0}
    other_seed = {**metrics, "xquad.ece.avg.shuffle": 35.0}
    cells = [cell("a", "squad", "xquad", "0", metrics), cell("b", "squad", "xquad", "1", other_seed)]
    section = calibration_table(report_of(cells, tmp_path, "calibration"))
    assert "| squad | none | 10.00 | 20.00 | 50.00 | 2 |" in section.markdown
    assert "| squad | shuffle | 30.00 | 30.00 | 30.00 | 2 |" in section.markdown  # ECE (25 + 35) / 2
    assert opens(tmp_path / "g_calibration_xquad.png")


def test_drop_by_resource_group_by_hand(tmp_path):
    from xit_dist.tasks.languages import language

    # XNLI: de and fr are high-resource, sw low, in tasks/languages.yaml (checked here, not assumed)
    groups = {code: language(code).resource_group for code in ("de", "fr", "sw")}
    metrics = {"xnli.accuracy.en": 80.0, "xnli.accuracy.de": 70.0, "xnli.accuracy.fr": 60.0, "xnli.accuracy.sw": 40.0,
               "xnli.accuracy.de.shuffle": 1.0}  # a perturbed key is not a language
    section = drop_by_resource_group(report_of([cell("a", "mnli", "xnli", "0", metrics)], tmp_path, "multilingual"))
    drops = {"de": 10.0, "fr": 20.0, "sw": 40.0}
    expected = {}
    for group in ("low", "mid", "high"):
        members = [drops[c] for c, g in groups.items() if g == group]
        expected[group] = f"{sum(members) / len(members):.2f}" if members else "–"
    gap = 80.0 - (70.0 + 60.0 + 40.0) / 3
    assert f"| mnli | {expected['low']} | {expected['mid']} | {expected['high']} | {gap:.2f} | 1 |" in section.markdown
    assert opens(tmp_path / "g_resource_groups_xnli.png")


def test_sections_without_their_data_add_nothing(tmp_path):
    cells = [cell("a", "mnli", "xnli", "0", {"xnli.accuracy.en": 50.0})]
    assert scaling_curve(report_of(cells, tmp_path, "data_size", {"a": {}})) is None  # no intermediate.0.task param: a baseline only
    assert calibration_table(report_of(cells, tmp_path, "calibration")) is None
    assert drop_by_resource_group(report_of(cells, tmp_path, "multilingual")) is None


def test_lareqa_scores_with_its_official_pooled_average():
    """LAReQA's official mAP@20 is one mean over all questions of all languages (the run logs it
    as .avg, weighted by query counts); the report takes it, not the mean over languages."""
    metrics = {"lareqa.map_at_20.en": 40.0, "lareqa.map_at_20.de": 20.0, "lareqa.map_at_20.avg": 35.0}  # 3:1 questions
    lareqa = cell("a", "squad", "lareqa", "0", metrics)
    assert lareqa.score() == 35.0
    assert lareqa.score(["en"]) == 40.0  # a subset: per language
    xnli = cell("b", "mnli", "xnli", "0", {"xnli.accuracy.en": 40.0, "xnli.accuracy.de": 20.0, "xnli.accuracy.avg": 35.0})
    assert xnli.score() == 30.0  # XTREME's mean over languages
