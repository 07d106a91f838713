"""Multiple choice (HellaSwag, CommonsenseQA, Cosmos QA, COPA / XCOPA): each (context, choice)
pair is encoded on its own, the pooled ``<s>`` representation of each gets one score, and a
softmax over a row's choices picks the answer (``AutoModelForMultipleChoice``, as jiant and
the transformers multiple-choice examples do it). The metric is accuracy.

The data sets lay their choices out differently (a list column, a list inside a struct, one
column per choice); ``ChoiceColumns`` (``xit_dist.tasks.choice_columns``) says where each part
lives, so one reader (``read_items``) serves them all.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

from xit_dist.data.tokenizer_identity import tokenizer_identity
from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.choice_columns import ChoiceColumns
from xit_dist.tasks.formats.base import INVALID_LABEL, TaskFormat, drop_unlabelled, featurize_rows
from xit_dist.tasks.formats.options import FormatOptions

FEATURIZE_VERSION = "1"
MISSING_LABELS = (None, "", -1)  # the hubs' "no gold label" (hidden test sets)
READ_CHUNK = 2000  # rows read at once by ``row_problems`` / ``label_counts``


@dataclass(frozen=True)
class ChoiceItem:
    """One row as the model sees it; ``problem`` says why the row cannot be used."""

    context: str
    choices: list[str]
    label: int
    problem: str | None


def read_items(task: Task, batch: dict[str, list], columns: ChoiceColumns) -> Iterator[ChoiceItem]:
    """Rows (a batch: column -> values) -> items, in row order."""
    size = len(batch[columns.label])
    contexts = [_column(batch, name) for name in columns.context]
    if isinstance(columns.choices, str):
        choice_lists = _column(batch, columns.choices)
    else:
        choice_lists = [list(row) for row in zip(*(_column(batch, name) for name in columns.choices))]
    prefixes = _column(batch, columns.choice_prefix) if columns.choice_prefix else [None] * size
    questions = _column(batch, columns.question) if columns.question else [None] * size
    keys = _column(batch, columns.label_keys) if columns.label_keys else [None] * size
    connectives = dict(columns.connectives)
    for index, raw_label in enumerate(batch[columns.label]):
        context = " ".join(part[index].strip() for part in contexts if part[index] and part[index].strip())
        choices = _with_prefix(choice_lists[index] or [], prefixes[index])
        label, label_problem = _label_id(task, columns, raw_label, keys[index])
        problem = None
        if len(choices) != task.num_labels:
            problem = f"{len(choices)} choices, expected {task.num_labels}"
        elif not context:
            problem = f"empty context ({' + '.join(columns.context)})"
        elif empty := [i for i, choice in enumerate(choices) if not choice]:
            problem = f"empty choice {empty[0]}"
        elif columns.question and questions[index] not in connectives:
            problem = f"{columns.question} {questions[index]!r} is not one of {list(connectives)}"
        elif label_problem:
            problem = label_problem
        if columns.question and problem is None:
            context = f"{context} {connectives[questions[index]]}"
        yield ChoiceItem(context, choices, label, problem)


def _column(batch: dict[str, list], name: str) -> list:
    """A column, or a field of a struct column (``"choices.text"``)."""
    if "." not in name:
        return batch[name]
    struct, field = name.split(".", 1)
    return [cell.get(field) if cell else None for cell in batch[struct]]


def _with_prefix(choices: list, prefix: str | None) -> list[str]:
    prefix = (prefix or "").strip()
    return [f"{prefix} {(c or '').strip()}".strip() if prefix else (c or "").strip() for c in choices]


def _label_id(task: Task, columns: ChoiceColumns, raw, keys: list | None) -> tuple[int, str | None]:
    """(choice index, None) or (INVALID_LABEL, why)."""
    if raw in MISSING_LABELS:
        return INVALID_LABEL, f"no gold label ({columns.label} {raw!r})"
    if columns.label_keys:
        if keys and raw in keys:
            return keys.index(raw), None
        return INVALID_LABEL, f"{columns.label} {raw!r} is not one of {columns.label_keys} {keys}"
    if columns.label_values:
        if raw in columns.label_values:
            return columns.label_values.index(raw), None
        return INVALID_LABEL, f"{columns.label} {raw!r} is not one of {list(columns.label_values)}"
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < task.num_labels:
        return raw, None
    return INVALID_LABEL, f"{columns.label} {raw!r} is not a choice index 0..{task.num_labels - 1}"


def _batches(rows, columns: ChoiceColumns) -> Iterator[dict[str, list]]:
    rows = rows.select_columns(columns.needed())
    for start in range(0, len(rows), READ_CHUNK):
        yield rows[start : start + READ_CHUNK]


class MultipleChoice(TaskFormat):
    name = "multiple_choice"
    # The library collator needs labels in every batch; evaluation rows always have one
    # (unlabelled rows are dropped), and ``predict`` passes only the encoder inputs on.
    model_inputs = ("input_ids", "attention_mask", "labels")

    # ------------------------------------------------------------------ data
    def featurize(self, task: Task, rows, source: DataSource, tokenizer, options: FormatOptions, *, for_eval: bool):
        """Every row -> ``input_ids`` / ``attention_mask`` of shape [choices][tokens] and its
        choice index; the context is the first segment, each choice the second (the pair is
        truncated longest-first). Rows ``row_problems`` reports are dropped."""
        columns: ChoiceColumns = source.columns
        width = task.num_labels

        def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            items = list(read_items(task, batch, columns))
            # unusable rows get placeholder choices, so every row has the same shape until filtered
            firsts = [item.context if item.problem is None else "" for item in items for _ in range(width)]
            seconds = [choice for item in items for choice in (item.choices if item.problem is None else [""] * width)]
            encoded = tokenizer(firsts, seconds, truncation=True, max_length=options.max_seq_length)
            out = {
                key: [encoded[key][i : i + width] for i in range(0, len(firsts), width)]
                for key in ("input_ids", "attention_mask")
            }
            out["labels"] = [item.label if item.problem is None else INVALID_LABEL for item in items]
            return out

        features = featurize_rows(
            rows, encode, tokenizer_identity(tokenizer), options.max_seq_length, self.name, FEATURIZE_VERSION,
            task.label_names, repr(columns),
        )
        return drop_unlabelled(features)

    def row_problems(self, task: Task, rows, source: DataSource):
        offset = 0
        for batch in _batches(rows, source.columns):
            for index, item in enumerate(read_items(task, batch, source.columns)):
                if item.problem:
                    yield offset + index, item.problem
            offset += len(batch[source.columns.label])

    def label_counts(self, task: Task, rows, source: DataSource) -> Counter:
        counts: Counter = Counter()
        for batch in _batches(rows, source.columns):
            for item in read_items(task, batch, source.columns):
                counts[task.label_names[item.label] if item.label != INVALID_LABEL else "(no valid label)"] += 1
        return counts

    def collator(self, tokenizer):
        from transformers import DataCollatorForMultipleChoice

        return DataCollatorForMultipleChoice(tokenizer, pad_to_multiple_of=8)

    def feature_lengths(self, features) -> list[int]:
        return [max(map(len, choices)) for choices in features["input_ids"]]

    # ------------------------------------------------------------------ model
    def model_class(self):
        from transformers import AutoModelForMultipleChoice

        return AutoModelForMultipleChoice

    def predict(self, model, batch: dict, options: FormatOptions) -> list[tuple[int, float]]:
        """(chosen index, its softmax probability) per row; the probability is kept for calibration."""
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        best = logits.softmax(dim=-1).max(dim=-1)
        return [(choice, round(probability, 6)) for choice, probability in zip(best.indices.tolist(), best.values.tolist())]

    def score(self, task: Task, rows, features, predictions, lang: str, options: FormatOptions) -> dict[str, float]:
        from xit_dist.evaluate.metrics import accuracy

        return {"accuracy": accuracy(list(features["labels"]), [choice for choice, _ in predictions])}

    def chance(self, task: Task) -> float:
        return 100.0 / task.num_labels
