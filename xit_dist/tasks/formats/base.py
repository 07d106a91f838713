"""The contract every task format fulfils. The training loop, the sharded zero-shot evaluation,
model selection on English dev and `xit-dist data` only talk to a format through these
methods, so a new format (one module) plugs into all of them at once.

Data flow: rows (hub schema, from ``data.loading``) -> ``featurize`` -> features (a
`datasets.Dataset`, cached) -> batches from ``collator`` -> model. At evaluation each rank runs
``predict`` on its shard of the features; rank 0 gathers one picklable prediction per feature
row, in feature order, and ``score`` turns them into metrics (it also gets the rows, for what
only the raw data knows: answer texts, sentence ids...).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.formats.options import FormatOptions


class TaskFormat:
    name: str = ""
    trains: bool = True  # False: evaluation-only (retrieval uses the encoder as it is)
    model_inputs: tuple[str, ...] = ("input_ids", "attention_mask")  # feature columns the model gets at evaluation

    # ------------------------------------------------------------------ data
    def featurize(self, task: Task, rows, source: DataSource, tokenizer, options: FormatOptions, *, for_eval: bool):
        """Rows -> features. For training: exactly the columns the model's forward takes,
        labels included. For evaluation: whatever ``score`` needs besides. Rows that
        ``row_problems`` reports are dropped. Must be cached by `datasets` under a fingerprint
        naming everything the output depends on (``data.loading.derived_fingerprint``)."""
        raise NotImplementedError

    def row_problems(self, task: Task, rows, source: DataSource) -> Iterable[tuple[int, str]]:
        """(row index, reason) for every row ``featurize`` drops: shown by `xit-dist data`."""
        return ()

    def label_counts(self, task: Task, rows, source: DataSource) -> Counter | None:
        """Distribution of gold labels (by name) for `xit-dist data`; None when labels are not classes."""
        return None

    def collator(self, tokenizer):
        """Lists of feature dicts -> a dict of padded tensors."""
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8)

    def feature_lengths(self, features) -> list[int]:
        """Tokens per feature row, for length-bucketed evaluation batches."""
        return [len(ids) for ids in features["input_ids"]]

    def check_options(self, options: FormatOptions, tokenizer) -> None:
        """Raise SpecError for settings this format cannot work with (called before Ray starts)."""

    # ------------------------------------------------------------------ model
    def model_class(self):
        raise NotImplementedError

    def label_config(self, task: Task) -> dict[str, Any]:
        """Keyword arguments for ``from_pretrained``/``AutoConfig`` that size the head."""
        return {}

    def predict(self, model, batch: dict, options: FormatOptions) -> list[Any]:
        """One small picklable prediction per row of ``batch`` (they are gathered across ranks)."""
        raise NotImplementedError

    def score(self, task: Task, rows, features, predictions: list[Any], lang: str, options: FormatOptions) -> dict[str, float]:
        """Metrics on the 0-100 scale; the first key is the primary metric (model selection, gap)."""
        raise NotImplementedError

    def num_examples(self, rows, features) -> int:
        """What the results table reports as examples (rows, not windows or sentences)."""
        return len(features)

    def chance(self, task: Task) -> float | None:
        """The primary metric of a uniform random guess, when it is meaningful."""
        return None
