"""Sentence and sentence-pair classification (MNLI, XNLI, PAWS-X, ...): the encoder's
``<s>`` representation feeds a classification head; the metric is accuracy."""

from __future__ import annotations

import hashlib
from typing import Any

from xit_dist.data.loading import derived_fingerprint
from xit_dist.tasks.base import DataSource, Task

FEATURIZE_VERSION = "1"
INVALID_LABEL = -1


class PairClassification:
    name = "pair_classification"

    # ------------------------------------------------------------------ data
    def featurize(self, rows, source: DataSource, tokenizer, max_length: int):
        """Tokenise the pair and map raw labels to class ids; rows without a valid gold label
        (SNLI's -1, an unknown string) are dropped. Cached by `datasets` under a fingerprint
        that names everything the output depends on."""
        columns = source.columns
        lookup = {value: i for i, value in enumerate(columns.label_values)} if columns.label_values else None

        def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            second = batch[columns.text_b] if columns.text_b else None
            encoded = tokenizer(batch[columns.text_a], second, truncation=True, max_length=max_length)
            raw = batch[columns.label]
            encoded["labels"] = [lookup.get(v, INVALID_LABEL) for v in raw] if lookup else list(raw)
            return dict(encoded)

        features = rows.map(
            encode,
            batched=True,
            remove_columns=rows.column_names,
            new_fingerprint=derived_fingerprint(rows, tokenizer_identity(tokenizer), max_length, self.name, FEATURIZE_VERSION),
        )
        return features.filter(
            _has_label, input_columns=["labels"], new_fingerprint=derived_fingerprint(features, "has-label")
        )

    # ------------------------------------------------------------------ model
    def model_class(self):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def label_config(self, task: Task) -> dict[str, Any]:
        return {
            "num_labels": task.num_labels,
            "id2label": dict(enumerate(task.label_names)),
            "label2id": {name: i for i, name in enumerate(task.label_names)},
        }

    def predictions(self, logits) -> list[int]:
        return logits.argmax(dim=-1).tolist()

    def score(self, gold: list[int], predicted: list[int]) -> dict[str, float]:
        from xit_dist.evaluate.metrics import accuracy

        return {"accuracy": accuracy(gold, predicted)}


def _has_label(label: int) -> bool:
    return label != INVALID_LABEL


_TOKENIZER_IDS: dict[int, str] = {}


def tokenizer_identity(tokenizer) -> str:
    """A content hash of the tokenizer (vocabulary, normaliser, template), so a changed
    tokenizer never reuses stale cached features."""
    key = id(tokenizer)
    if key not in _TOKENIZER_IDS:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        text = backend.to_str() if backend is not None else repr(sorted(tokenizer.get_vocab().items()))
        _TOKENIZER_IDS[key] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return _TOKENIZER_IDS[key]
