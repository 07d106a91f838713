"""Calibration of a model's confidence (Study 4): expected calibration error over 15 equal-width
bins, the Brier score, and the reliability diagram.

Definitions (Guo et al. 2017; Brier 1950), for N predictions with confidence c_i in [0, 1] and
correctness y_i in {0, 1}:

- bin b holds the predictions with c in (b/15, (b+1)/15] (bin 0 also holds c = 0);
  ECE = sum_b |B_b|/N * |mean_{i in B_b} y_i - mean_{i in B_b} c_i|;
- Brier = mean_i (c_i - y_i)^2: the Brier score of the top prediction being right.

Both are reported on the 0-100 scale of every other metric (ECE in percentage points, Brier x
100), under the keys ``ece`` and ``brier``. For extractive QA the confidence is the predicted
span's probability (softmax over the question's n-best list, ``ExtractiveQA.answers``) and a
prediction is correct when it is an exact match under the task's official normalisation
(``metrics.qa_scores``). Formats that do not expose per-example probabilities (classification
predicts the argmax only) get no calibration metrics.

The per-bin sums (``BinStats``) are what an evaluation stores: they are small, they merge, and
both metrics and the diagram are computed from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

NUM_BINS = 15


@dataclass
class BinStats:
    """Per bin: how many predictions, the sum of their confidences, how many were right; and
    the sum of squared errors over all (for Brier)."""

    count: list[int]
    confidence: list[float]
    correct: list[float]
    squared_error: float

    @classmethod
    def of(cls, confidences: Sequence[float], correct: Sequence[bool | float], num_bins: int = NUM_BINS) -> "BinStats":
        c = np.asarray(confidences, dtype=np.float64)
        y = np.asarray(correct, dtype=np.float64)
        if c.shape != y.shape:
            raise ValueError(f"{len(c)} confidences but {len(y)} correctness values")
        if c.size and (c.min() < 0 or c.max() > 1):
            raise ValueError("confidences must lie in [0, 1]")
        bins = bin_index(c, num_bins)
        return cls(
            count=np.bincount(bins, minlength=num_bins).astype(int).tolist(),
            confidence=np.bincount(bins, weights=c, minlength=num_bins).tolist(),
            correct=np.bincount(bins, weights=y, minlength=num_bins).tolist(),
            squared_error=float(np.sum((c - y) ** 2)),
        )

    @property
    def total(self) -> int:
        return int(sum(self.count))

    def ece(self) -> float:
        total = self.total
        if not total:
            return float("nan")
        gaps = [abs(right - conf) for right, conf in zip(self.correct, self.confidence)]  # n_b * |acc_b - conf_b|
        return 100.0 * sum(gaps) / total

    def brier(self) -> float:
        return 100.0 * self.squared_error / self.total if self.total else float("nan")

    def metrics(self) -> dict[str, float]:
        return {"ece": self.ece(), "brier": self.brier()}

    def to_dict(self) -> dict:
        return {"count": self.count, "confidence": self.confidence, "correct": self.correct, "squared_error": self.squared_error}


def bin_index(confidences: np.ndarray, num_bins: int = NUM_BINS) -> np.ndarray:
    """Bin b covers (b/num_bins, (b+1)/num_bins]; a confidence of exactly 0 goes to bin 0."""
    return np.clip(np.ceil(confidences * num_bins).astype(int) - 1, 0, num_bins - 1)


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool | float], num_bins: int = NUM_BINS) -> float:
    return BinStats.of(confidences, correct, num_bins).ece()


def brier_score(confidences: Sequence[float], correct: Sequence[bool | float]) -> float:
    return BinStats.of(confidences, correct).brier()


def qa_confidences(fmt, task, rows, features, predictions, lang: str, options) -> tuple[list[float], list[bool]]:
    """(span probability, exact match) per evaluated question of an extractive-QA split."""
    from xit_dist.evaluate.metrics import qa_scores, squad_v2_scores

    columns = task.eval_source("validation", lang).columns
    answers = fmt.answers(task, rows, features, predictions, lang, options)
    ids, gold = rows[columns.id], rows[columns.answers]
    confidences, correct = [], []
    for index in sorted(set(features["example_index"])):
        answer, texts = answers[ids[index]], {"q": list(gold[index]["text"])}
        if columns.allows_unanswerable:  # SQuAD v2.0: the v2 script's exact match
            exact = squad_v2_scores({"q": answer.text}, texts)["exact_match"] == 100.0
        else:
            exact = qa_scores({"q": answer.text}, texts, lang, columns.metric_style)["exact_match"] == 100.0
        confidences.append(min(max(answer.probability, 0.0), 1.0))
        correct.append(exact)
    return confidences, correct


def example_confidences(fmt, task, rows, features, predictions, lang: str, options) -> tuple[list[float], list[bool]] | None:
    """Per-example (confidence, correct) for the formats that expose probabilities; else None."""
    if hasattr(fmt, "answers"):
        return qa_confidences(fmt, task, rows, features, predictions, lang, options)
    return None


def reliability_diagram(stats: dict[str, BinStats], path: Path, title: str) -> Path:
    """Accuracy per confidence bin against the diagonal of perfect calibration, one line per
    series (e.g. per perturbation), with each series' ECE in the legend and the share of
    predictions per bin below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.2, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    edges = np.linspace(0, 1, NUM_BINS + 1)
    width = 1 / NUM_BINS / max(1, len(stats))
    top.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="perfect calibration")
    for k, (label, series) in enumerate(stats.items()):
        count = np.asarray(series.count, dtype=float)
        filled = count > 0
        accuracy = np.divide(series.correct, count, out=np.zeros_like(count), where=filled)
        mean_conf = np.divide(series.confidence, count, out=np.zeros_like(count), where=filled)
        top.plot(mean_conf[filled], accuracy[filled], marker="o", linewidth=1.2, label=f"{label} (ECE {series.ece():.1f})")
        share = count / max(1, count.sum())
        bottom.bar(edges[:-1] + k * width, share, width=width, align="edge", label=label)
    top.set_ylabel("accuracy (exact match)")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_title(title, fontsize=9)
    top.legend(fontsize=7, loc="upper left")
    bottom.set_xlabel(f"confidence ({NUM_BINS} equal-width bins)")
    bottom.set_ylabel("share")
    bottom.set_xticks(edges[::3])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
