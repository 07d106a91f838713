"""Per-language results: MLflow metric keys (``{task}.{metric}.{lang}``, ``.avg``,
``{task}.transfer_gap``), the console table, and the CSV / JSON / bar-chart artifacts."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from xit_dist.evaluate.metrics import language_average, metric_library_versions, pooled_average, transfer_gap
from xit_dist.tasks.languages import SOURCE_LANGUAGE


@dataclass
class TaskResults:
    task: str
    split: str
    per_language: dict[str, dict[str, float]]  # lang -> metric -> score
    counts: dict[str, int]
    chance: float | None = None  # the primary metric of a uniform random guess, when meaningful
    robustness: dict | None = None  # perturbed scores and reliability bins (xit_dist.evaluate.robustness)
    datasets: list[dict] = field(default_factory=list)  # what was read, per language (data.dataset_records)
    # Versions of the libraries that compute a metric (seqeval's changes UD-POS F1), for the record.
    libraries: dict[str, str | None] = field(default_factory=metric_library_versions)

    @property
    def metric_names(self) -> list[str]:
        first = next(iter(self.per_language.values()))
        return list(first)

    @property
    def primary_metric(self) -> str:
        return self.metric_names[0]

    def column(self, metric: str) -> dict[str, float]:
        return {lang: scores[metric] for lang, scores in self.per_language.items()}

    def average(self, metric: str) -> float:
        """The task's average of ``metric``: the mean over languages, or, where the official script
        averages over every query of every language (LAReQA), the mean weighted by query counts."""
        from xit_dist.tasks.registry import get_task

        column = self.column(metric)
        if get_task(self.task).average == "queries":
            return pooled_average(column, self.counts)
        return language_average(column)

    def gap(self) -> float | None:
        scores = self.column(self.primary_metric)
        if SOURCE_LANGUAGE not in scores or len(scores) < 2:
            return None
        return transfer_gap(scores, SOURCE_LANGUAGE)

    def mlflow_metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in self.metric_names:
            column = self.column(metric)
            out.update({f"{self.task}.{metric}.{lang}": value for lang, value in column.items()})
            out[f"{self.task}.{metric}.avg"] = self.average(metric)
        gap = self.gap()
        if gap is not None:
            out[f"{self.task}.transfer_gap"] = gap
        if self.robustness:
            from xit_dist.evaluate.robustness import robustness_metrics

            out.update(robustness_metrics(self.task, self.per_language, self.robustness))
        return out

    def table(self) -> str:
        """The per-language table printed at the end of a run."""
        metrics = self.metric_names
        header = f"{'language':<10}{'examples':>10}" + "".join(f"{m:>14}" for m in metrics)
        chance = f"; chance {self.chance:.1f}" if self.chance is not None else ""
        lines = [f"{self.task} ({self.split}), zero-shot from English{chance}", header, "-" * len(header)]
        for lang, scores in self.per_language.items():
            lines.append(f"{lang:<10}{self.counts[lang]:>10}" + "".join(f"{scores[m]:>14.2f}" for m in metrics))
        lines.append("-" * len(header))
        lines.append(f"{'avg':<10}{'':>10}" + "".join(f"{self.average(m):>14.2f}" for m in metrics))
        gap = self.gap()
        if gap is not None:
            lines.append(f"transfer gap ({SOURCE_LANGUAGE} minus mean of others, {self.primary_metric}): {gap:.2f}")
        return "\n".join(lines)

    def write(self, directory: Path) -> list[Path]:
        """results.json, results.csv and a bar chart; returns the paths."""
        directory.mkdir(parents=True, exist_ok=True)
        as_json = directory / f"{self.task}_results.json"
        as_json.write_text(
            json.dumps(
                {"task": self.task, "split": self.split, "per_language": self.per_language, "counts": self.counts,
                 "summary": self.mlflow_metrics(), "libraries": self.libraries},
                indent=2,
            )
        )
        as_csv = directory / f"{self.task}_results.csv"
        with as_csv.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["language", "examples", *self.metric_names])
            for lang, scores in self.per_language.items():
                writer.writerow([lang, self.counts[lang], *(f"{scores[m]:.4f}" for m in self.metric_names)])
        paths = [as_json, as_csv, self.bar_chart(directory / f"{self.task}_{self.primary_metric}_by_language.png")]
        if self.robustness:
            from xit_dist.evaluate.robustness import write_robustness

            paths += write_robustness(self.task, self.split, self.per_language, self.robustness, directory)
        return paths

    def bar_chart(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        column = self.column(self.primary_metric)
        langs = list(column)
        colors = ["#d62728" if lang == SOURCE_LANGUAGE else "#1f77b4" for lang in langs]
        fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(langs) + 1.5), 3.2))
        bars = ax.bar(langs, [column[lang] for lang in langs], color=colors)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
        ax.axhline(self.average(self.primary_metric), color="gray", linestyle="--", linewidth=1, label="average")
        if self.chance is not None:
            ax.axhline(self.chance, color="black", linestyle=":", linewidth=1, label=f"chance ({self.chance:.1f})")
        ax.set_ylabel(f"{self.primary_metric} (%)")
        ax.set_ylim(0, 100)
        ax.set_title(f"{self.task} {self.split}: zero-shot {self.primary_metric} by language (red: English)")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path
