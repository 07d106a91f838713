"""Sentence and sentence-pair classification (MNLI, XNLI, PAWS-X, QQP, SST-2, ANLI+): the
encoder's ``<s>`` representation feeds a classification head; the metric is accuracy."""

from __future__ import annotations

from collections import Counter
from typing import Any

from xit_dist.data.tokenizer_identity import tokenizer_identity
from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.formats.base import INVALID_LABEL, TaskFormat, class_head_config, drop_unlabelled, featurize_rows
from xit_dist.tasks.formats.options import FormatOptions

FEATURIZE_VERSION = "2"


class PairClassification(TaskFormat):
    name = "pair_classification"

    # ------------------------------------------------------------------ data
    def featurize(self, task: Task, rows, source: DataSource, tokenizer, options: FormatOptions, *, for_eval: bool):
        """Tokenise the pair and map raw labels to class ids; rows without a valid gold label
        (SNLI's -1, an unknown string) or with an empty first text are dropped."""
        columns = source.columns
        to_id = _label_mapper(task, source)

        def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            second = batch[columns.text_b] if columns.text_b else None
            encoded = tokenizer(batch[columns.text_a], second, truncation=True, max_length=options.max_seq_length)
            encoded["labels"] = [
                to_id(label) if text and text.strip() else INVALID_LABEL
                for label, text in zip(batch[columns.label], batch[columns.text_a])
            ]
            return dict(encoded)

        features = featurize_rows(
            rows, encode, tokenizer_identity(tokenizer), options.max_seq_length, self.name, FEATURIZE_VERSION, task.label_names
        )
        return drop_unlabelled(features)

    def row_problems(self, task: Task, rows, source: DataSource):
        to_id = _label_mapper(task, source)
        columns = source.columns
        for index, (label, text) in enumerate(zip(rows[columns.label], rows[columns.text_a])):
            if to_id(label) == INVALID_LABEL:
                yield index, f"label {label!r} is not one of {list(task.label_names)}"
            elif not text or not text.strip():
                yield index, f"empty {columns.text_a}"

    def label_counts(self, task: Task, rows, source: DataSource) -> Counter:
        to_id = _label_mapper(task, source)
        return Counter(
            task.label_names[i] if i != INVALID_LABEL else "(invalid)" for i in map(to_id, rows[source.columns.label])
        )

    # ------------------------------------------------------------------ model
    def model_class(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def label_config(self, task: Task) -> dict[str, Any]:
        return class_head_config(task)

    def predict(self, model, batch: dict, options: FormatOptions) -> list[int]:
        return model(**batch).logits.argmax(dim=-1).tolist()

    def score(self, task: Task, rows, features, predictions: list[int], lang: str, options: FormatOptions) -> dict[str, float]:
        from xit_dist.evaluate.metrics import accuracy

        return {"accuracy": accuracy(list(features["labels"]), predictions)}

    def chance(self, task: Task) -> float:
        return 100.0 / task.num_labels


def _label_mapper(task: Task, source: DataSource):
    """Raw label cell -> class id, or INVALID_LABEL. Hub labels are ids (GLUE's ClassLabel) or
    strings in ``label_values`` order (XNLI's ``gold_label``, PAWS-X's "0"/"1")."""
    values = source.columns.label_values
    if values:
        lookup = {value: i for i, value in enumerate(values)}
        return lambda raw: lookup.get(raw, INVALID_LABEL)
    return lambda raw: raw if isinstance(raw, int) and 0 <= raw < task.num_labels else INVALID_LABEL
