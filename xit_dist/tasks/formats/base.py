"""The contract every task format fulfils. The training loop, the sharded zero-shot evaluation,
model selection on English dev, `xit-dist plan` and `xit-dist data` talk to a format only
through ``TaskFormat``'s attributes and methods (looked up by name: ``formats.get_format``), so a
new format (one module) plugs into all of them at once. The only other names of a format module
used outside ``tasks/formats/`` are the column types task definitions declare (such as
``token_tagging.TaggingColumns``); tests also reach the helpers directly.

Data flow: rows (hub schema, from ``data.loading``) -> ``featurize`` -> features (a
`datasets.Dataset`, cached) -> batches from ``collator`` -> model. At evaluation each rank runs
``predict`` on its shard of the features; rank 0 gathers one picklable prediction per feature
row, in feature order, and ``score`` turns them into metrics (it also gets the rows, for what
only the raw data knows: answer texts, sentence ids...).

Shared by the formats: ``featurize_rows`` (the cached, batched map of rows to features),
``drop_unlabelled`` (the filter of features whose label is ``INVALID_LABEL``) and
``class_head_config`` (``label_config`` of a head with one output per class).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable

from xit_dist.data.hub_schema import derived_fingerprint
from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.formats.options import FormatOptions

INVALID_LABEL = -1  # the label feature of a row without a usable gold label (dropped by ``drop_unlabelled``)


class TaskFormat:
    """One format's featurisation, head, predictions and score.

    Optional, defined only by formats whose predictions carry a probability per example (the
    calibration studies look for it with ``hasattr``): ``answers(task, rows, features,
    predictions, lang, options) -> {example id: answer with .text and .probability}``
    (extractive QA)."""

    name: str = ""
    trains: bool = True  # False: evaluation-only (retrieval uses the encoder as it is)
    model_inputs: tuple[str, ...] = ("input_ids", "attention_mask")  # feature columns the model gets at evaluation

    # ------------------------------------------------------------------ data
    def featurize(self, task: Task, rows, source: DataSource, tokenizer, options: FormatOptions, *, for_eval: bool):
        """Rows -> features. For training: exactly the columns the model's forward takes,
        labels included. For evaluation: whatever ``score`` needs besides. Rows that
        ``row_problems`` reports are dropped. Must be cached by `datasets` under a fingerprint
        naming everything the output depends on (``featurize_rows`` does it)."""
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

    def embedding_layer(self, num_hidden_layers: int, options: FormatOptions) -> int | None:
        """The ``hidden_states`` index a format that embeds with the encoder as it is pools
        (0 = embeddings, ``num_hidden_layers`` = last layer); None for a format with a head.
        Raises SpecError for a layer the model does not have: `xit-dist plan` shows the index,
        a run checks it before Ray starts."""
        return None

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


# ---------------------------------------------------------------------------------- shared steps


def featurize_rows(rows, encode, *fingerprint: object, with_indices: bool = False):
    """``rows.map(encode)`` in batches, the row columns replaced by what ``encode`` returns, cached
    under the rows' fingerprint plus ``fingerprint`` (everything else the output depends on)."""
    return rows.map(
        encode,
        batched=True,
        with_indices=with_indices,
        remove_columns=rows.column_names,
        new_fingerprint=derived_fingerprint(rows, *fingerprint),
    )


def class_head_config(task: Task) -> dict[str, Any]:
    """``label_config`` of a head with one output per class of ``task``, named by its label names."""
    return {
        "num_labels": task.num_labels,
        "id2label": dict(enumerate(task.label_names)),
        "label2id": {name: i for i, name in enumerate(task.label_names)},
    }


def drop_unlabelled(features):
    """The feature rows whose ``labels`` is a class (not ``INVALID_LABEL``), cached."""
    return features.filter(
        _has_label, input_columns=["labels"], new_fingerprint=derived_fingerprint(features, "has-label")
    )


def _has_label(label: int) -> bool:
    return label != INVALID_LABEL
