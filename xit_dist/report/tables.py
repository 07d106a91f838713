"""``xit-dist report``: paper-style tables and plots of grids, read from MLflow alone.

Every grid cell's parent run carries the grid's tags (``xit.grid``, ``xit.axis.<axis>``,
``xit.seed``, ``xit.cell_index``) and its zero-shot metrics (``{task}.{metric}.{lang}``). The
report groups cells into rows (every axis but target and seed; the intermediate setting first)
and target columns, averages over seeds, and compares each row with the no-intermediate
baseline (the row whose intermediate label is ``none``, other labels equal):

- the intermediate x target table of deltas, mean ± std over seeds of the per-seed differences
  (seeds paired: the same seed of the row and of the baseline), as Markdown and CSV; a cell
  with fewer finished seeds than the grid has says so ("2/3 seeds"), so a grid that is still
  running gives a partial report;
- the XTREME and XTREME-R score of each row, from the targets the grid has (each task over its
  benchmark languages, QA as (F1 + EM) / 2, the benchmark the mean of the task scores; rows
  short of tasks or languages are marked);
- PNGs: a heatmap of the delta table, a per-language heatmap per target, the benchmark scores.

Everything is written to a directory and logged as artifacts of one report run per grid in the
same MLflow experiment (tag ``xit.report_for``), replaced on every report. Every table is also
logged with ``MlflowClient.log_table`` (``report/<grid>_<table>.json``), so the MLflow UI shows it.

An experiment's single runs (``xit-dist run spec.yaml``: top-level parent runs with a target and
no grid) are reported as one pseudo-grid named ``runs`` (``SINGLE_RUNS``), a cell per
intermediate setting x target x seed; of runs sharing one, the latest finished counts.

Study-specific sections: a function ``(GridReport) -> Section | None`` decorated with
``@report_section("<study>")`` runs for grids whose ``study:`` (tag ``xit.study``) is that name;
``@report_section()`` runs for every grid. Add them to this module or to a module that
``xit_dist/report/__init__.py`` imports (as it imports ``studies``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from xit_dist.errors import XitError
from xit_dist.evaluate.metrics import benchmark_score, mean_std, task_score
from xit_dist.config import layout
from xit_dist.plan.grid import NO_INTERMEDIATE, is_grid_file
from xit_dist.tasks.languages import SOURCE_LANGUAGE
from xit_dist.tracking.store import DEFAULT_STORE_FILE
from xit_dist.tracking.tags import (
    AXIS_TAG_PREFIX, CELL_TAG, CELLS_TAG, GRID_TAG, INDEX_TAG, INTERMEDIATE_TAG, KIND_TAG, PARENT_TAG, REPORT_KIND, REPORT_TAG,
    SEARCH_KIND, SEED_TAG, STUDY_TAG, SUMMARY_KIND, TARGET_TAG, TRIAL_KIND,
)
BENCHMARKS = ("xtreme", "xtreme-r")
QA_METRICS = ("f1", "exact_match")
SINGLE_RUNS = "runs"          # the pseudo-grid of an experiment's single runs (its report run's xit.report_for)
NOT_A_CELL = (SUMMARY_KIND, REPORT_KIND, SEARCH_KIND, TRIAL_KIND)  # kinds of runs that are never report cells
REPORT_DIR = "report"         # the report run's artifact folder


# ---------------------------------------------------------------------------------- data


@dataclass
class CellResult:
    """One grid cell as MLflow holds it: its labels and its parent run's metrics."""

    run_id: str
    name: str
    index: int
    labels: dict[str, str]        # axis -> label (xit.axis.* tags)
    target: str
    intermediate: str
    seed: str
    status: str
    metrics: dict[str, float]

    @property
    def row(self) -> str:
        """The cell's row: its labels on every axis but target and seed, intermediate first."""
        others = [f"{axis}={label}" for axis, label in self.labels.items() if axis not in ("intermediate", "target", "seed")]
        return ", ".join([self.intermediate, *others])

    def metric_names(self) -> list[str]:
        prefix = f"{self.target}."
        names = []
        for key in self.metrics:
            if key.startswith(prefix) and key.count(".") == 2:
                name = key.split(".")[1]
                if name not in names:
                    names.append(name)
        return names

    def primary_metric(self) -> str | None:
        names = self.metric_names()
        if not names:
            return None
        try:
            from xit_dist.tasks.registry import get_task

            registered = get_task(self.target).metric
        except XitError:
            registered = None
        return registered if registered in names else names[0]

    def per_language(self, metric: str) -> dict[str, float]:
        prefix = f"{self.target}.{metric}."
        return {key[len(prefix):]: value for key, value in self.metrics.items()
                if key.startswith(prefix) and key[len(prefix):] != "avg" and "." not in key[len(prefix):]}  # not {lang}.{perturbation}

    def language_scores(self) -> dict[str, float]:
        """Per language, the number XTREME averages: the metric, or (F1 + EM) / 2 for QA."""
        if all(m in self.metric_names() for m in QA_METRICS):
            f1, em = self.per_language("f1"), self.per_language("exact_match")
            return {lang: (f1[lang] + em[lang]) / 2 for lang in f1 if lang in em}
        metric = self.primary_metric()
        return self.per_language(metric) if metric else {}

    def score(self, languages: list[str] | None = None) -> float | None:
        """The task score over ``languages`` (default: every evaluated one); None without results."""
        if all(m in self.metric_names() for m in QA_METRICS):
            f1, em = self.per_language("f1"), self.per_language("exact_match")
            keep = [lang for lang in f1 if lang in em and (languages is None or lang in languages)]
            return task_score({l: f1[l] for l in keep}, {l: em[l] for l in keep}) if keep else None
        scores = {lang: v for lang, v in self.language_scores().items() if languages is None or lang in languages}
        if not scores:
            return None
        pooled = self.pooled_score(scores)
        return pooled if pooled is not None else task_score(scores)

    def pooled_score(self, scores: dict[str, float]) -> float | None:
        """For a task whose official average is one mean over every query of every language
        (LAReQA), the run's logged ``.avg``, weighted by the query counts the run saw; it stands
        when ``scores`` covers exactly the run's languages (a subset has no counts here, and
        falls back to the mean over languages)."""
        from xit_dist.tasks.registry import get_task

        try:
            if get_task(self.target).average != "queries":
                return None
        except XitError:
            return None
        metric = self.primary_metric()
        logged = self.metrics.get(f"{self.target}.{metric}.avg")
        return logged if logged is not None and set(scores) == set(self.per_language(metric)) else None


@dataclass
class Section:
    """A report section: Markdown, the files it wrote and its tables as rows (table name ->
    rows of column -> value), which are logged as MLflow tables for the UI."""

    title: str
    markdown: str
    files: list[Path] = field(default_factory=list)
    tables: dict[str, list[dict]] = field(default_factory=dict)


@dataclass
class GridReport:
    """What a report section reads: the grid's cells and helpers to group them."""

    grid: str
    study: str | None
    cells: list[CellResult]
    expected_cells: int
    out_dir: Path
    client: object                # mlflow.tracking.MlflowClient, for sections that read child runs or artifacts
    experiment_id: str

    def _in_grid_order(self, label: Callable[[CellResult], str]) -> list[str]:
        """Each distinct ``label`` of the cells once, in the grid's cell order."""
        return list(dict.fromkeys(label(cell) for cell in sorted(self.cells, key=lambda c: c.index)))

    @property
    def rows(self) -> list[str]:
        seen = self._in_grid_order(lambda cell: cell.row)
        baselines = [r for r in seen if r.split(", ")[0] == NO_INTERMEDIATE]
        return baselines + [r for r in seen if r not in baselines]

    @property
    def targets(self) -> list[str]:
        return self._in_grid_order(lambda cell: cell.target)

    def group(self, row: str, target: str) -> list[CellResult]:
        return [c for c in self.cells if c.row == row and c.target == target]

    def finished(self, row: str, target: str) -> dict[str, CellResult]:
        """seed -> the cell, for cells with results."""
        return {c.seed: c for c in self.group(row, target) if c.score() is not None}

    def baseline_of(self, row: str) -> str | None:
        others = row.split(", ")[1:]
        candidate = ", ".join([NO_INTERMEDIATE, *others])
        return candidate if candidate != row and candidate in self.rows else None

    def path(self, name: str) -> Path:
        return self.out_dir / f"{_file_safe(self.grid)}_{name}"


def _file_safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text)


# ---------------------------------------------------------------------------------- sections

SectionFn = Callable[[GridReport], "Section | None"]
SECTIONS: dict[str | None, list[SectionFn]] = {}


def report_section(study: str | None = None) -> Callable[[SectionFn], SectionFn]:
    """Register a report section for grids of ``study`` (None: every grid)."""

    def register(fn: SectionFn) -> SectionFn:
        SECTIONS.setdefault(study, []).append(fn)
        return fn

    return register


def format_mean_std(values: list[float], signed: bool) -> str:
    mean, std = mean_std(values)
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    return text + (f" ± {std:.2f}" if std is not None else "")


@dataclass
class TableEntry:
    row: str
    target: str
    seeds_done: int
    seeds_expected: int
    scores: dict[str, float]          # seed -> task score
    deltas: dict[str, float]          # seed -> score minus the baseline's (paired by seed)
    is_baseline: bool


def table_entries(report: GridReport) -> list[TableEntry]:
    entries = []
    for row in report.rows:
        baseline = report.baseline_of(row)
        for target in report.targets:
            group = report.group(row, target)
            if not group:
                continue
            done = report.finished(row, target)
            scores = {seed: cell.score() for seed, cell in done.items()}
            deltas = {}
            if baseline is not None:
                base = report.finished(baseline, target)
                deltas = {seed: scores[seed] - base[seed].score() for seed in scores if seed in base}
            entries.append(TableEntry(row, target, len(done), len(group), scores, deltas, baseline is None))
    return entries


def _entry_text(entry: TableEntry | None) -> str:
    if entry is None:
        return ""
    values = list(entry.scores.values()) if entry.is_baseline else list(entry.deltas.values())
    partial = f" ({entry.seeds_done}/{entry.seeds_expected} seeds)" if entry.seeds_done < entry.seeds_expected else ""
    if not values:
        return f"–{partial or ' (no paired baseline seed)'}"
    return format_mean_std(values, signed=not entry.is_baseline) + partial


@report_section()
def delta_table(report: GridReport) -> Section:
    entries = table_entries(report)
    by_key = {(e.row, e.target): e for e in entries}
    header = "| setting | " + " | ".join(report.targets) + " |"
    lines = [header, "|" + " --- |" * (len(report.targets) + 1)]
    for row in report.rows:
        label = f"{row} (score)" if report.baseline_of(row) is None else f"{row} (Δ)"
        lines.append(f"| {label} | " + " | ".join(_entry_text(by_key.get((row, t))) for t in report.targets) + " |")
    columns = ["row", "target", "seeds_done", "seeds_expected", "score_mean", "score_std", "delta_mean", "delta_std", "scores_by_seed", "deltas_by_seed"]
    rows = []
    for e in entries:
        s_mean, s_std = mean_std(list(e.scores.values())) if e.scores else (None, None)
        d_mean, d_std = mean_std(list(e.deltas.values())) if e.deltas else (None, None)
        rows.append(dict(zip(columns, [e.row, e.target, e.seeds_done, e.seeds_expected, s_mean, s_std, d_mean, d_std,
                                       _by_seed(e.scores), _by_seed(e.deltas)])))
    table_csv = write_table(report, "table", columns, rows)
    text = (
        "Task score per target (accuracy, F1, or (F1 + EM) / 2 for QA; mean over the evaluated languages). "
        "The baseline row (no intermediate phase) gives the score; every other row the difference from it, "
        "mean ± std over seeds of the per-seed differences (same seed paired). "
        "\"k/n seeds\": only k of the row's n cells have results yet.\n\n" + "\n".join(lines)
    )
    return Section("Intermediate × target: Δ against no intermediate task", text, [table_csv, delta_heatmap(report, entries)], {"table": rows})


def _by_seed(values: dict[str, float]) -> str:
    return ";".join(f"{k}:{v:.4f}" for k, v in sorted(values.items()))


def _csv_text(value) -> str:
    """A CSV cell of the report's tables: a float to 4 decimals, None empty."""
    if value is None:
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_table(report: GridReport, name: str, columns: list[str], rows: list[dict], text: Callable[[object], str] = _csv_text) -> Path:
    """Write ``rows`` (column -> value) as ``<grid>_<name>.csv``, each value through ``text``.
    The same rows, unformatted, go into the section's ``tables`` for MLflow."""
    path = report.path(f"{name}.csv")
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows([text(row.get(column)) for column in columns] for row in rows)
    return path


@report_section()
def benchmark_scores(report: GridReport) -> Section | None:
    from xit_dist.tasks.languages import benchmark_tasks, task_languages

    rows_out: list[tuple[str, str, float, int, int, list[str]]] = []
    for benchmark in BENCHMARKS:
        tasks = [t for t in benchmark_tasks(benchmark) if t in report.targets]
        if not tasks:
            continue
        for row in report.rows:
            task_means: dict[str, float] = {}
            notes: list[str] = []
            for task in tasks:
                languages = list(task_languages(task, benchmark))
                cells = report.finished(row, task).values()
                scores = [c.score(languages) for c in cells]
                scores = [s for s in scores if s is not None]
                if not scores:
                    continue
                task_means[task] = statistics.fmean(scores)
                covered = {lang for c in cells for lang in c.language_scores() if lang in languages}
                if len(covered) < len(languages):
                    notes.append(f"{task} {len(covered)}/{len(languages)} languages")
            if task_means:
                rows_out.append((benchmark, row, benchmark_score(task_means), len(task_means), len(benchmark_tasks(benchmark)), notes))
    if not rows_out:
        return None
    lines = ["| benchmark | setting | score | tasks | coverage |", "| --- | --- | --- | --- | --- |"]
    for benchmark, row, score, have, total, notes in rows_out:
        lines.append(f"| {benchmark} | {row} | {score:.2f} | {have}/{total} | {'; '.join(notes) or 'complete'} |")
    columns = ["benchmark", "row", "score", "tasks_present", "tasks_in_benchmark", "coverage_notes"]
    rows = [dict(zip(columns, [benchmark, row, score, have, total, "; ".join(notes)])) for benchmark, row, score, have, total, notes in rows_out]
    path = write_table(report, "benchmark", columns, rows)
    text = (
        "Benchmark score per setting: each task's score over the benchmark's languages (mean over seeds), "
        "then the unweighted mean over the grid's tasks of that benchmark. Fewer tasks or languages than the "
        "benchmark has are listed under coverage: such a score is not comparable to published ones.\n\n" + "\n".join(lines)
    )
    return Section("XTREME / XTREME-R scores", text, [path, benchmark_plot(report, rows_out)], {"benchmark": rows})


@report_section()
def language_heatmaps(report: GridReport) -> Section:
    files, lines, rows = [], [], []
    columns = ["row", "target", "language", "seeds", "score_mean", "delta_mean"]
    for target in report.targets:
        matrix = per_language_matrix(report, target)
        for row, (langs, values) in matrix.items():
            for lang in langs:
                score, delta, seeds = values[lang]
                rows.append(dict(zip(columns, [row, target, lang, seeds, score, delta])))
        files.append(language_heatmap(report, target, matrix))
        lines.append(f"![{target}]({files[-1].name})")
    path_csv = write_table(report, "per_language", columns, rows)
    return Section("Per-language results", "\n\n".join(lines), [path_csv, *files], {"per_language": rows})


def per_language_matrix(report: GridReport, target: str) -> dict[str, tuple[list[str], dict[str, tuple[float | None, float | None, int]]]]:
    """row -> (languages, lang -> (mean score, mean paired delta or None, seeds))."""
    out = {}
    for row in report.rows:
        done = report.finished(row, target)
        if not done:
            continue
        baseline = report.baseline_of(row)
        base = report.finished(baseline, target) if baseline else {}
        langs = _language_order(target, {lang for c in done.values() for lang in c.language_scores()})
        values = {}
        for lang in langs:
            scores = [c.language_scores()[lang] for c in done.values() if lang in c.language_scores()]
            deltas = [done[s].language_scores()[lang] - base[s].language_scores()[lang]
                      for s in done if s in base and lang in done[s].language_scores() and lang in base[s].language_scores()]
            values[lang] = (statistics.fmean(scores) if scores else None, statistics.fmean(deltas) if deltas else None, len(scores))
        out[row] = (langs, values)
    return out


def _language_order(task: str, present: set[str]) -> list[str]:
    try:
        from xit_dist.tasks.registry import get_task

        order = list(get_task(task).languages)
    except XitError:
        order = []
    known = [lang for lang in order if lang in present]
    rest = sorted(present - set(known))
    ordered = known + rest
    return ([SOURCE_LANGUAGE] if SOURCE_LANGUAGE in ordered else []) + [lang for lang in ordered if lang != SOURCE_LANGUAGE]


# ---------------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _text_colour(value: float, limit: float) -> str:
    """White on the saturated ends of a diverging map, black elsewhere."""
    return "white" if math.isfinite(value) and abs(value) > 0.6 * limit else "black"


def delta_heatmap(report: GridReport, entries: list[TableEntry]) -> Path:
    """Rows x targets; colour = mean delta (the baseline row shows its score in text, no colour)."""
    import numpy as np

    plt = _pyplot()
    rows, targets = report.rows, report.targets
    by_key = {(e.row, e.target): e for e in entries}
    values = np.full((len(rows), len(targets)), np.nan)
    for i, row in enumerate(rows):
        for j, target in enumerate(targets):
            e = by_key.get((row, target))
            if e is not None and not e.is_baseline and e.deltas:
                values[i, j] = statistics.fmean(e.deltas.values())
    limit = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    limit = max(float(limit), 0.5)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(targets) + 3), max(2.4, 0.55 * len(rows) + 1.6)))
    image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for i, row in enumerate(rows):
        for j, target in enumerate(targets):
            text = _entry_text(by_key.get((row, target))).replace(" seeds)", ")")
            ax.text(j, i, text.replace(" (", "\n("), ha="center", va="center", fontsize=7, color=_text_colour(values[i, j], limit))
    ax.set_xticks(range(len(targets)), targets)
    ax.set_yticks(range(len(rows)), [f"{r} (score)" if report.baseline_of(r) is None else r for r in rows])
    ax.set_xlabel("target task")
    ax.set_title(f"{report.grid}: Δ task score vs no intermediate task\n(mean ± std over seeds; baseline row: its score)", fontsize=9)
    fig.colorbar(image, ax=ax, label="Δ score (points)")
    fig.tight_layout()
    path = report.path("deltas.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def language_heatmap(report: GridReport, target: str, matrix) -> Path:
    """Rows x languages: deltas when the grid has a baseline (diverging colours), else scores."""
    import numpy as np

    plt = _pyplot()
    has_deltas = any(report.baseline_of(row) for row in matrix)
    rows = [row for row in matrix if report.baseline_of(row)] if has_deltas else list(matrix)
    langs = _language_order(target, {lang for row in rows for lang in matrix[row][0]})
    values = np.full((len(rows), len(langs)), np.nan)
    for i, row in enumerate(rows):
        for j, lang in enumerate(langs):
            entry = matrix[row][1].get(lang)
            if entry is not None:
                value = entry[1] if has_deltas else entry[0]
                values[i, j] = np.nan if value is None else value
    fig, ax = plt.subplots(figsize=(max(4.5, 0.6 * len(langs) + 3), max(2.2, 0.5 * len(rows) + 1.6)))
    if has_deltas:
        limit = max(float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 1.0, 0.5)
        image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        label, title = "Δ score (points)", f"{report.grid} / {target}: Δ per language vs no intermediate task\n(mean over paired seeds)"
    else:
        image = ax.imshow(values, cmap="viridis", aspect="auto")
        label, title = "score", f"{report.grid} / {target}: score per language\n(mean over seeds)"
    for i in range(len(rows)):
        for j in range(len(langs)):
            if math.isfinite(values[i, j]):
                colour = _text_colour(values[i, j], limit) if has_deltas else "white"
                ax.text(j, i, f"{values[i, j]:+.1f}" if has_deltas else f"{values[i, j]:.1f}", ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(len(langs)), langs)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("language")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label=label)
    fig.tight_layout()
    path = report.path(f"{_file_safe(target)}_languages.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def benchmark_plot(report: GridReport, rows_out) -> Path:
    plt = _pyplot()
    benchmarks = [b for b in BENCHMARKS if any(r[0] == b for r in rows_out)]
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(max(4.0, 0.7 * len(report.rows) + 2.5) * len(benchmarks), 3.4), squeeze=False)
    for ax, benchmark in zip(axes[0], benchmarks):
        mine = [r for r in rows_out if r[0] == benchmark]
        bars = ax.bar([r[1] for r in mine], [r[2] for r in mine], color=["#7f7f7f" if report.baseline_of(r[1]) is None else "#1f77b4" for r in mine])
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
        ax.set_ylim(0, max(r[2] for r in mine) * 1.15)
        complete = all(not r[5] and r[3] == r[4] for r in mine)
        ax.set_title(f"{benchmark.upper()} score ({mine[0][3]}/{mine[0][4]} tasks{'' if complete else ', partial'})", fontsize=9)
        ax.set_ylabel("score")
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle(f"{report.grid}: benchmark score per setting (grey: no intermediate task)", fontsize=9)
    fig.tight_layout()
    path = report.path("benchmark.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------- reading MLflow


def resolve_source(experiment_or_grid: str, tracking_uri: str | None, grid: str | None) -> tuple[str, str, str | None]:
    """(tracking URI, experiment, grid filter) from a grid file or an experiment name."""
    if Path(experiment_or_grid).is_file():
        from xit_dist.config.load import read_yaml_mapping

        read_yaml_mapping(experiment_or_grid)  # a file that cannot be read is one line naming it, not an experiment name
    if is_grid_file(experiment_or_grid):
        from xit_dist.plan.grid import load_grid
        from xit_dist.tracking.store import resolve_tracking_uri

        loaded = load_grid(experiment_or_grid)
        spec = loaded.cells[0].spec
        uri = tracking_uri or resolve_tracking_uri(spec.tracking.uri, layout.output_root(spec.output_dir))
        return uri, spec.tracking.experiment, grid or loaded.name
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None:
        default = layout.default_output_dir() / DEFAULT_STORE_FILE
        if not default.is_file():
            raise XitError("report: no MLflow store: pass --tracking-uri, set MLFLOW_TRACKING_URI, or give the grid file")
        uri = f"sqlite:///{default.resolve()}"
    return uri, experiment_or_grid, grid


def _search_all(client, experiment_id: str, filter_string: str):
    """Every run of the experiment that matches ``filter_string``, paged through."""
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=1000, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def read_cells(client, experiment_id: str, grid: str | None) -> dict[str, list[CellResult]]:
    """grid -> its cells' parent runs (paged through the whole experiment). A grid's summary runs
    carry its tags too, but are no cells."""
    filter_string = f"tags.`{GRID_TAG}` = '{grid}'" if grid else f"tags.`{GRID_TAG}` != ''"
    grids: dict[str, list[CellResult]] = {}
    for run in _search_all(client, experiment_id, filter_string):
        tags = run.data.tags
        if CELL_TAG not in tags or tags.get(KIND_TAG) == SUMMARY_KIND:
            continue
        labels = {key[len(AXIS_TAG_PREFIX):]: value for key, value in tags.items() if key.startswith(AXIS_TAG_PREFIX)}
        cell = CellResult(
            run_id=run.info.run_id,
            name=tags[CELL_TAG],
            index=int(tags.get(INDEX_TAG, 0)),
            labels=labels,
            target=tags.get(TARGET_TAG, labels.get("target", "?")),
            intermediate=labels.get("intermediate", tags.get(INTERMEDIATE_TAG, NO_INTERMEDIATE).replace(",", "+")),
            seed=tags.get(SEED_TAG, labels.get("seed", "0")),
            status=run.info.status,
            metrics=dict(run.data.metrics),
        )
        grids.setdefault(tags[GRID_TAG], []).append(cell)
    return grids


def is_single_run(tags: dict[str, str]) -> bool:
    """A top-level run of one spec (``xit-dist run``): it has a target, no grid, no parent run,
    and is not a summary, report, search or trial run."""
    return TARGET_TAG in tags and GRID_TAG not in tags and PARENT_TAG not in tags and tags.get(KIND_TAG) not in NOT_A_CELL


def _recency(run) -> tuple[bool, int, int]:
    """Sort key of runs of one setting: finished runs first, then the one that ended (or started) last."""
    return run.info.status == "FINISHED", run.info.end_time or 0, run.info.start_time or 0


def read_single_runs(client, experiment_id: str) -> tuple[list[CellResult], list[str]]:
    """The experiment's single runs as the cells of the pseudo-grid ``SINGLE_RUNS``: one per
    intermediate setting x target x seed, the latest finished run where there are several (a
    spec run again with other settings is a new run; one run twice is not two seeds), in the
    order they started; and a note per setting that had several runs."""
    by_key: dict[tuple[str, str, str], list] = {}
    for run in _search_all(client, experiment_id, f"tags.`{TARGET_TAG}` != ''"):
        tags = run.data.tags
        if is_single_run(tags):
            intermediate = tags.get(INTERMEDIATE_TAG, NO_INTERMEDIATE).replace(",", "+")
            seed = tags.get(SEED_TAG, run.data.params.get("seed", "0"))
            by_key.setdefault((intermediate, tags[TARGET_TAG], seed), []).append(run)
    kept, notes = [], []
    for (intermediate, target, seed), runs in by_key.items():
        runs.sort(key=_recency, reverse=True)
        kept.append((runs[0], intermediate, target, seed))
        if len(runs) > 1:
            notes.append(f"{intermediate} -> {target}, seed {seed}: {len(runs)} runs; the report takes the latest finished, "
                         f"{runs[0].info.run_name} ({runs[0].info.run_id}), and leaves out {', '.join(r.info.run_id for r in runs[1:])}.")
    kept.sort(key=lambda k: k[0].info.start_time or 0)
    cells = [CellResult(run.info.run_id, run.info.run_name or run.info.run_id, index,
                        {"intermediate": intermediate, "target": target, "seed": seed},
                        target, intermediate, seed, run.info.status, dict(run.data.metrics))
             for index, (run, intermediate, target, seed) in enumerate(kept)]
    return cells, notes


@dataclass
class ReportSource:
    """One report to write: a grid (or the pseudo-grid of single runs), its cells, the tags of
    its first cell (study, cell count) and notes on how cells were chosen."""

    name: str
    cells: list[CellResult]
    tags: dict[str, str]
    notes: list[str] = field(default_factory=list)
    single_runs: bool = False


def report_sources(client, experiment_id: str, grid: str | None) -> list[ReportSource]:
    """The grids of the experiment (or ``grid``), then its single runs as the pseudo-grid
    ``SINGLE_RUNS`` (unless a real grid has that name)."""
    grids = read_cells(client, experiment_id, grid)
    sources = [ReportSource(name, cells, client.get_run(cells[0].run_id).data.tags) for name, cells in sorted(grids.items())]
    if grid in (None, SINGLE_RUNS) and SINGLE_RUNS not in grids:
        cells, notes = read_single_runs(client, experiment_id)
        if cells:
            sources.append(ReportSource(SINGLE_RUNS, cells, {}, notes, single_runs=True))
    return sources


def build_report(source: ReportSource, out_dir: Path, client, experiment_id: str) -> tuple[Path, list[Path], dict[str, list[dict]]]:
    """Run the sections and write the Markdown; returns it, the sections' files and their tables
    (artifact file name -> rows)."""
    grid, cells = source.name, source.cells
    report = GridReport(
        grid=grid,
        study=source.tags.get(STUDY_TAG),
        cells=sorted(cells, key=lambda c: c.index),
        expected_cells=int(source.tags.get(CELLS_TAG, len(cells))),
        out_dir=out_dir,
        client=client,
        experiment_id=experiment_id,
    )
    finished = sum(1 for c in cells if c.score() is not None)
    status = "complete" if finished == report.expected_cells else f"partial: {finished}/{report.expected_cells} cells have results"
    chosen = SECTIONS.get(None, []) + (SECTIONS.get(report.study, []) if report.study else [])
    sections = [section for section in (fn(report) for fn in chosen) if section is not None]
    heading = f"# Single runs ({grid}: a cell per intermediate setting, target and seed)" if source.single_runs else f"# Grid {grid}"
    lines = [heading, "", f"{len(cells)} cells in MLflow ({status}); study: {report.study or '-'}.", ""]
    lines += [f"- {note}" for note in source.notes] + ([""] if source.notes else [])
    files: list[Path] = []
    tables: dict[str, list[dict]] = {}
    for section in sections:
        lines += [f"## {section.title}", "", section.markdown, ""]
        for path in section.files:
            if path.suffix == ".png" and f"({path.name})" not in section.markdown:
                lines += [f"![{path.stem}]({path.name})", ""]
        files += section.files
        tables.update({report.path(f"{name}.json").name: rows for name, rows in section.tables.items() if rows})
    markdown = report.path("report.md")
    markdown.write_text("\n".join(lines))
    return markdown, files, tables


def report_run(client, experiment_id: str, name: str) -> str:
    """The report run of grid ``name``: the one tagged ``xit.report_for``, created on first use."""
    existing = client.search_runs([experiment_id], filter_string=f"tags.`{REPORT_TAG}` = '{name}'", max_results=1)
    if existing:
        return existing[0].info.run_id
    return client.create_run(experiment_id, run_name=f"report:{name}", tags={REPORT_TAG: name, KIND_TAG: REPORT_KIND}).info.run_id


def log_tables(client, run_id: str, tables: dict[str, list[dict]]) -> None:
    """Log each table with ``log_table`` under ``report/``, where the MLflow UI renders it.
    ``log_table`` appends to an artifact file that exists, so the run's earlier report tables
    (those its ``mlflow.loggedArtifacts`` tag lists) are deleted first and dropped from the tag:
    a rerun replaces them, and a table a section no longer writes does not linger."""
    import pandas as pd
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

    run = client.get_run(run_id)
    logged = json.loads(run.data.tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
    previous = [entry for entry in logged if entry.get("type") == "table" and str(entry.get("path")).startswith(f"{REPORT_DIR}/")]
    paths = {f"{REPORT_DIR}/{name}": rows for name, rows in tables.items()}
    existing = {artifact.path for artifact in client.list_artifacts(run_id, REPORT_DIR)}
    repository = get_artifact_repository(run.info.artifact_uri, tracking_uri=client.tracking_uri)
    for path in ({entry["path"] for entry in previous} | set(paths)) & existing:
        repository.delete_artifacts(path)
    if previous:
        client.set_tag(run_id, MLFLOW_LOGGED_ARTIFACTS, json.dumps([entry for entry in logged if entry not in previous]))
    for path, rows in paths.items():
        client.log_table(run_id, data=pd.DataFrame(rows), artifact_file=path)


def write_report(experiment_or_grid: str, tracking_uri: str | None = None, grid: str | None = None, out: str | None = None) -> dict[str, tuple[str, list[Path]]]:
    """Write and log the report of every grid in the experiment (or of ``grid``), and of its
    single runs. Returns grid -> (report run id, files)."""
    from mlflow.tracking import MlflowClient

    uri, experiment, grid = resolve_source(experiment_or_grid, tracking_uri, grid)
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        known = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise XitError(f"report: no MLflow experiment {experiment!r} in {uri} (experiments: {known})")
    sources = report_sources(client, found.experiment_id, grid)
    if not sources:
        raise XitError(f"report: experiment {experiment!r} has no runs of grid {grid!r}" if grid else
                       f"report: experiment {experiment!r} has neither grid runs nor single runs (top-level runs tagged {TARGET_TAG})")
    out_dir = Path(out) if out else Path("reports") / _file_safe(experiment)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for source in sources:
        markdown, files, tables = build_report(source, out_dir, client, found.experiment_id)
        run_id = report_run(client, found.experiment_id, source.name)
        for path in [markdown, *files]:
            client.log_artifact(run_id, str(path), REPORT_DIR)
        log_tables(client, run_id, tables)
        client.set_terminated(run_id, "FINISHED")
        written[source.name] = (run_id, [markdown, *files])
        print(f"report {source.name}: {markdown} ({len(files)} more files, {len(tables)} tables); MLflow run {run_id} (experiment {experiment!r})")
    return written
