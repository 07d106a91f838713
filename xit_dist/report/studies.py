"""Report sections of the studies (``study:`` in a grid file; ``xit_dist.report.tables`` runs them):

- ``data_size``: the score-vs-size curve per target (one line per intermediate task, the
  no-intermediate score as a dashed line); N is each cell's parent-run param
  ``intermediate.0.subsample.size`` (absent: the full set, plotted last).
- ``calibration``: ECE, Brier and F1 (language averages, mean over seeds) per row, target and
  perturbation, from ``{task}.{metric}.avg[.{perturbation}]``; a bar chart of ECE per
  perturbation. Each cell's reliability diagrams are artifacts of its runs (``results/``).
- ``multilingual``: the drop from English per language resource group (low / mid / high,
  ``tasks/languages.yaml``) on the target's XTREME-R languages (all evaluated languages for a
  target outside XTREME-R), and the transfer gap, per row and target, mean over seeds.
"""

from __future__ import annotations

import statistics

from xit_dist.report.tables import GridReport, Section, _pyplot, report_section, write_table

FULL = "full"
RESOURCE_GROUPS = ("low", "mid", "high")
SIZE_PARAM = "intermediate.0.subsample.size"
TASK_PARAM = "intermediate.0.task"


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _fmt_cell(value) -> str:
    """A CSV cell of the calibration and resource-group tables: numbers as in their Markdown."""
    return _fmt(value) if value is None or isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------- data size


@report_section("data_size")
def scaling_curve(report: GridReport) -> Section | None:
    points: dict[str, dict[str, dict[str, list[float]]]] = {}  # target -> task -> size label -> scores
    baseline: dict[str, list[float]] = {}
    for cell in report.cells:
        score = cell.score()
        if score is None:
            continue
        params = report.client.get_run(cell.run_id).data.params
        task = params.get(TASK_PARAM)
        if task is None:
            baseline.setdefault(cell.target, []).append(score)
            continue
        size = params.get(SIZE_PARAM, FULL)
        points.setdefault(cell.target, {}).setdefault(task, {}).setdefault(size, []).append(score)
    if not points:
        return None
    plt = _pyplot()
    files, lines, rows = [], ["| target | intermediate | size | score | seeds |", "| --- | --- | --- | --- | --- |"], []
    for target, by_task in points.items():
        sizes = sorted({s for by_size in by_task.values() for s in by_size}, key=lambda s: (s == FULL, int(s) if s != FULL else 0))
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for task, by_size in by_task.items():
            xs = [i for i, s in enumerate(sizes) if s in by_size]
            ys = [statistics.fmean(by_size[sizes[i]]) for i in xs]
            ax.plot(xs, ys, marker="o", label=task)
            for i, y in zip(xs, ys):
                rows.append({"target": target, "intermediate": task, "size": sizes[i], "score_mean": y, "seeds": len(by_size[sizes[i]])})
                lines.append(f"| {target} | {task} | {sizes[i]} | {y:.2f} | {len(by_size[sizes[i]])} |")
        if target in baseline:
            ax.axhline(statistics.fmean(baseline[target]), color="gray", linestyle="--", linewidth=1, label="no intermediate")
        ax.set_xticks(range(len(sizes)), sizes)
        ax.set_xlabel("intermediate training rows")
        ax.set_ylabel(f"{target} score")
        ax.set_title(f"{report.grid}: {target} vs intermediate data size", fontsize=9)
        ax.legend(fontsize=7)
        path = _save_figure(report, plt, fig, f"scaling_{target}.png")
        files.append(path)
        lines.append(f"\n![{target}]({path.name})\n")
    table = write_table(report, "data_size", ["target", "intermediate", "size", "score_mean", "seeds"], rows)
    return Section("Score vs intermediate data size", "\n".join(lines), [table, *files], {"data_size": rows})


# ---------------------------------------------------------------------------------- calibration


def perturbation_names(report: GridReport, target: str) -> list[str]:
    names: list[str] = []
    for cell in report.cells:
        for key in cell.metrics:
            parts = key.split(".")
            if len(parts) == 4 and parts[0] == target and parts[2] == "avg" and parts[3] not in names:
                names.append(parts[3])
    return names


@report_section("calibration")
def calibration_table(report: GridReport) -> Section | None:
    metrics = ("ece", "brier", "f1")
    lines, files, rows = [], [], []
    plt = _pyplot()
    for target in report.targets:
        names = ["none", *perturbation_names(report, target)]
        lines += [f"**{target}** (language averages)", "", "| row | perturbation | ECE | Brier | F1 | seeds |", "| --- | --- | --- | --- | --- | --- |"]
        ece_bars: dict[str, list[float | None]] = {}
        for row in report.rows:
            done = report.finished(row, target)
            if not done:
                continue
            for name in names:
                suffix = "" if name == "none" else f".{name}"
                values = {m: _mean([c.metrics[f"{target}.{m}.avg{suffix}"] for c in done.values() if f"{target}.{m}.avg{suffix}" in c.metrics]) for m in metrics}
                if values["ece"] is None:
                    continue
                rows.append({"row": row, "target": target, "perturbation": name, **values, "seeds": len(done)})
                lines.append(f"| {row} | {name} | {_fmt(values['ece'])} | {_fmt(values['brier'])} | {_fmt(values['f1'])} | {len(done)} |")
                ece_bars.setdefault(row, []).append(values["ece"])
        if ece_bars:
            path = _grouped_bars(
                report, plt, ece_bars, names, f"calibration_{target}.png",
                figsize=(max(4.5, 1.2 * len(names) * len(ece_bars) / 2), 3.4),
                ylabel="ECE (15 bins, %)", title=f"{report.grid}: {target} calibration by perturbation",
            )
            files.append(path)
            lines += ["", f"![{target}]({path.name})", ""]
    if not rows:
        return None
    table = write_table(report, "calibration", ["row", "target", "perturbation", *metrics, "seeds"], rows, _fmt_cell)
    lines.append("Reliability diagrams per language: each cell's target run, artifacts `results/<task>_reliability_<lang>.png`.")
    return Section("Calibration under perturbations", "\n".join(lines), [table, *files], {"calibration": rows})


# ---------------------------------------------------------------------------------- multilingual


def _evaluated_languages(target: str, present: set[str]) -> tuple[list[str], str]:
    from xit_dist.errors import XitError
    from xit_dist.tasks.registry import get_task

    try:
        task = get_task(target)
    except XitError:
        return sorted(present), "evaluated"
    if "xtreme-r" in task.benchmarks:
        return [lang for lang in task.benchmark_languages("xtreme-r") if lang in present], "XTREME-R"
    return [lang for lang in task.languages if lang in present], "evaluated"


@report_section("multilingual")
def drop_by_resource_group(report: GridReport) -> Section | None:
    lines, files, rows = [], [], []
    plt = _pyplot()
    for target in report.targets:
        bars: dict[str, list[float | None]] = {}
        rows_text: list[str] = []
        which = "evaluated"
        for row in report.rows:
            done = report.finished(row, target)
            if not done:
                continue
            means, gap, counted = _resource_group_drops(done.values(), target)
            which = counted or which
            if gap is None:
                continue
            rows.append({"row": row, "target": target, "languages": which, **means, "transfer_gap": gap, "seeds": len(done)})
            rows_text.append(f"| {row} | {_fmt(means['low'])} | {_fmt(means['mid'])} | {_fmt(means['high'])} | {_fmt(gap)} | {len(done)} |")
            bars[row] = [means[g] for g in RESOURCE_GROUPS]
        if bars:
            lines += [f"**{target}**: drop from English (points), {which} languages", "",
                      "| row | low | mid | high | transfer gap | seeds |", "| --- | --- | --- | --- | --- | --- |", *rows_text]
            files.append(_resource_group_chart(report, plt, target, bars))
            lines += ["", f"![{target}]({files[-1].name})", ""]
    if not rows:
        return None
    table = write_table(report, "resource_groups", ["row", "target", "languages", *RESOURCE_GROUPS, "transfer_gap", "seeds"], rows, _fmt_cell)
    return Section("Robustness by language resource group", "\n".join(lines), [table, *files], {"resource_groups": rows})


def _resource_group_drops(cells, target: str) -> tuple[dict[str, float | None], float | None, str | None]:
    """Over one row's finished cells (those with an English score): the mean drop from English
    per resource group, the mean transfer gap (None: no cell had one) and which languages were
    counted (None: no cell had an English score)."""
    from xit_dist.tasks.languages import resource_groups

    per_group: dict[str, list[float]] = {group: [] for group in RESOURCE_GROUPS}
    gaps = []
    which = None
    for cell in cells:
        scores = cell.language_scores()
        if "en" not in scores:
            continue
        langs, which = _evaluated_languages(target, set(scores) - {"en"})
        for group, members in resource_groups(langs).items():
            if members:
                per_group[group].append(statistics.fmean(scores["en"] - scores[lang] for lang in members))
        if langs:
            gaps.append(scores["en"] - statistics.fmean(scores[lang] for lang in langs))
    return {group: _mean(values) for group, values in per_group.items()}, _mean(gaps), which


def _resource_group_chart(report: GridReport, plt, target: str, bars: dict[str, list[float | None]]):
    """Bars of the drop from English per resource group, one per row; a group without
    languages is named so under its empty place."""
    empty = {i for i in range(len(RESOURCE_GROUPS)) if all(values[i] is None for values in bars.values())}
    ticks = [f"{g}\n(no languages)" if i in empty else g for i, g in enumerate(RESOURCE_GROUPS)]
    return _grouped_bars(
        report, plt, bars, ticks, f"resource_groups_{target}.png", figsize=(5.5, 3.4),
        ylabel="drop from English (points)", title=f"{report.grid}: {target}",
        xlabel="language resource group", zero_line=True,
    )


# ---------------------------------------------------------------------------------- figures


def _grouped_bars(
    report: GridReport, plt, bars: dict[str, list[float | None]], ticks: list[str], filename: str, *,
    figsize: tuple[float, float], ylabel: str, title: str, xlabel: str | None = None, zero_line: bool = False,
):
    """One group of bars per tick, one bar per row (a None value: no bar), saved as ``filename``."""
    fig, ax = plt.subplots(figsize=figsize)
    width = 0.8 / len(bars)
    for k, (row, values) in enumerate(bars.items()):
        present = [(i, v) for i, v in enumerate(values) if v is not None]
        ax.bar([i + k * width for i, _ in present], [v for _, v in present], width=width, label=row)
    if zero_line:
        ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(ticks))], ticks)
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save_figure(report, plt, fig, filename)


def _save_figure(report: GridReport, plt, fig, filename: str):
    """Lay out, write (120 dpi) and close ``fig``; its path in the report folder."""
    fig.tight_layout()
    path = report.path(filename)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
