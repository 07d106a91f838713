"""Study 4's outputs: scores on perturbed copies of the target-language data and calibration,
per language and perturbation, as MLflow metrics, a CSV and reliability diagrams.

Metric keys (DESIGN.md's ``{task}.{metric}.{lang}`` with the perturbation as a fourth part):

- ``{task}.{metric}.{lang}``: unperturbed, as always; with ``evaluation.calibration`` the
  metrics include ``ece`` and ``brier`` (0-100; ``xit_dist.evaluate.calibration``);
- ``{task}.{metric}.{lang}.{perturbation}``: the same metrics on the perturbed copy
  (``evaluation.perturbations[*].name``, default its kind), e.g. ``xquad.f1.de.shuffle``,
  ``xquad.ece.de.shuffle``;
- ``{task}.{metric}.avg.{perturbation}``: the mean over languages;
- ``{task}.{metric}.drop.{perturbation}``: unperturbed avg minus perturbed avg (how much the
  perturbation costs; for ``ece``/``brier`` a negative drop means calibration got worse).

Artifacts: ``{task}_perturbations.csv`` (one row per perturbation x language, "none" first) and,
with calibration, ``{task}_reliability_{lang}.png`` (one line per perturbation).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from xit_dist.evaluate.calibration import BinStats, example_confidences, reliability_diagram
from xit_dist.evaluate.metrics import language_average

UNPERTURBED = "none"


def check_evaluation_options(task, evaluation) -> None:
    """ValueError naming the field when the target task cannot take the options."""
    from xit_dist.data.perturb import column_roles
    from xit_dist.tasks.formats import get_format

    source = task.eval_source("validation", task.languages[0])
    for index, perturbation in enumerate(evaluation.perturbations):
        try:
            column_roles(source, perturbation.apply_to)
        except ValueError as err:
            raise ValueError(f"evaluation.perturbations.{index}.{err}") from None
    if evaluation.calibration and not hasattr(get_format(task.format), "answers"):
        raise ValueError(
            f"evaluation.calibration: {task.name} ({task.format}) exposes no per-example confidence; calibration covers extractive QA"
        )


def calibration_stats(fmt, task, rows, features, predictions, lang: str, options) -> BinStats | None:
    pairs = example_confidences(fmt, task, rows, features, predictions, lang, options)
    return BinStats.of(*pairs) if pairs is not None else None


def series_key(lang: str, perturbation: str | None) -> str:
    return f"{lang}.{perturbation or UNPERTURBED}"


def robustness_part(evaluation: dict[str, Any]) -> dict[str, Any] | None:
    """What an evaluation record holds beyond the plain scores (None when nothing)."""
    part = {key: evaluation[key] for key in ("perturbed", "reliability") if evaluation.get(key)}
    return part or None


def robustness_metrics(task: str, per_language: dict[str, dict[str, float]], robustness: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, by_language in robustness.get("perturbed", {}).items():
        if not by_language:
            continue
        metrics = list(next(iter(by_language.values())))
        for metric in metrics:
            column = {lang: scores[metric] for lang, scores in by_language.items()}
            out.update({f"{task}.{metric}.{lang}.{name}": value for lang, value in column.items()})
            perturbed_avg = language_average(column)
            out[f"{task}.{metric}.avg.{name}"] = perturbed_avg
            clean = {lang: per_language[lang][metric] for lang in column if metric in per_language.get(lang, {})}
            if len(clean) == len(column):
                out[f"{task}.{metric}.drop.{name}"] = language_average(clean) - perturbed_avg
    return out


def write_robustness(task: str, split: str, per_language: dict[str, dict[str, float]], robustness: dict[str, Any], directory: Path) -> list[Path]:
    paths = []
    perturbed = robustness.get("perturbed", {})
    if perturbed:
        path = directory / f"{task}_perturbations.csv"
        metrics = list(next(iter(per_language.values())))
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["perturbation", "language", *metrics])
            for lang, scores in per_language.items():
                writer.writerow([UNPERTURBED, lang, *(f"{scores[m]:.4f}" for m in metrics)])
            for name, by_language in perturbed.items():
                for lang, scores in by_language.items():
                    writer.writerow([name, lang, *(f"{scores.get(m, float('nan')):.4f}" for m in metrics)])
        paths.append(path)
    reliability = robustness.get("reliability", {})
    languages = list(dict.fromkeys(key.split(".", 1)[0] for key in reliability))
    for lang in languages:
        series = {
            key.split(".", 1)[1]: BinStats(**value) for key, value in reliability.items() if key.split(".", 1)[0] == lang
        }
        paths.append(
            reliability_diagram(series, directory / f"{task}_reliability_{lang}.png", f"{task} {split} {lang}: reliability by perturbation")
        )
    return paths
