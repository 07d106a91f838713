"""Token tagging (UD-POS, PAN-X, CCG supertagging): one tag per word of a pre-tokenised
sentence. The encoder's hidden state of each word's FIRST sub-word feeds a linear head (the
BERT / XTREME recipe); the other sub-words and the special tokens carry the label -100, which
the loss ignores and the collator pads with.

Long sentences: XTREME's preprocessing (``utils_preprocess.py``) splits a sentence whose
sub-words do not fit ``max_seq_length`` into several pieces at word boundaries, so no word is
ever cut off. We do the same: a sentence becomes as many windows (feature rows) as it needs,
each holding whole words; only a single word longer than a whole window loses its tail
sub-words, never its first one. Every word is therefore predicted and scored. At scoring time
the windows of a sentence are joined again, so seqeval sees the sentence as the hub has it
(XTREME scores the pieces as separate sentences; the two differ only for an entity that spans a
split point). Words the tokenizer turns into no sub-word at all (an empty string, a character
the vocabulary cannot encode) are replaced by the unknown token, as XTREME does.

Metric: ``Task.metric``. ``"f1"``: seqeval on the tag names (UD-POS and PAN-X, XTREME's
choice, seqeval's chunking applied to POS tags unchanged: see ``evaluate.metrics.tagging_f1``);
``"accuracy"``: the share of words tagged right (CCG, jiant's metric for it).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from xit_dist.data.tokenizer_identity import tokenizer_identity
from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.formats.base import TaskFormat, class_head_config, featurize_rows
from xit_dist.tasks.formats.options import FormatOptions

FEATURIZE_VERSION = "1"
IGNORED = -100  # CrossEntropyLoss's ignore_index; DataCollatorForTokenClassification pads labels with it
SENTENCE_COLUMN = "sentence"  # evaluation features: the row a window came from


@dataclass(frozen=True)
class TaggingColumns:
    """Which columns hold the words and their tag ids (a list each, of equal length).

    ``tag_text`` names an optional column with the tags as written, shown by `xit-dist data`
    when the ids are not meaningful by themselves (CCG supertags)."""

    tokens: str
    tags: str
    tag_text: str | None = None


class TokenTagging(TaskFormat):
    name = "token_tagging"
    # The labels go to ``predict`` too: they mark each word's first sub-word (the model's loss on them is unused).
    model_inputs = ("input_ids", "attention_mask", "labels")

    # ------------------------------------------------------------------ data
    def featurize(self, task: Task, rows, source: DataSource, tokenizer, options: FormatOptions, *, for_eval: bool):
        """Rows -> windows of whole words with first-sub-word labels. Rows that ``row_problems``
        reports are dropped. Evaluation features also keep the row index of each window."""
        columns: TaggingColumns = source.columns
        budget = options.max_seq_length - tokenizer.num_special_tokens_to_add(pair=False)
        if budget < 1:
            raise ValueError(f"max_seq_length {options.max_seq_length} leaves no room for words")

        def encode(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
            usable = [
                (index, words, tags)
                for index, words, tags in zip(indices, batch[columns.tokens], batch[columns.tags])
                if _row_problem(words, tags, task.num_labels) is None
            ]
            window_words, window_tags, window_rows = [], [], []
            pieces_per_row = subword_counts(tokenizer, [words for _, words, _ in usable])
            for (index, words, tags), pieces in zip(usable, pieces_per_row):
                words = [word if count else tokenizer.unk_token for word, count in zip(words, pieces)]
                for start, end in word_windows([max(count, 1) for count in pieces], budget):
                    window_words.append(words[start:end])
                    window_tags.append(tags[start:end])
                    window_rows.append(index)
            out: dict[str, list[Any]] = {"input_ids": [], "attention_mask": [], "labels": []}
            if window_words:
                encoded = tokenizer(window_words, is_split_into_words=True, truncation=True, max_length=options.max_seq_length)
                out["input_ids"], out["attention_mask"] = encoded["input_ids"], encoded["attention_mask"]
                out["labels"] = [first_subword_labels(encoded.word_ids(i), tags) for i, tags in enumerate(window_tags)]
            if for_eval:
                out[SENTENCE_COLUMN] = window_rows
            return out

        return featurize_rows(
            rows, encode, tokenizer_identity(tokenizer), options.max_seq_length, self.name, FEATURIZE_VERSION,
            task.num_labels, columns, for_eval, with_indices=True,
        )

    def row_problems(self, task: Task, rows, source: DataSource) -> Iterator[tuple[int, str]]:
        columns: TaggingColumns = source.columns
        texts = rows[columns.tag_text] if columns.tag_text else None
        for index, (words, tags) in enumerate(zip(rows[columns.tokens], rows[columns.tags])):
            problem = _row_problem(words, tags, task.num_labels, texts[index] if texts else None)
            if problem:
                yield index, problem

    def label_counts(self, task: Task, rows, source: DataSource) -> Counter:
        columns: TaggingColumns = source.columns
        if columns.tag_text:
            return Counter(tag for tags in rows[columns.tag_text] for tag in tags)
        names = task.label_names
        return Counter(
            names[tag] if 0 <= tag < len(names) else "(invalid)" for tags in rows[columns.tags] for tag in tags
        )

    def collator(self, tokenizer):
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=8, label_pad_token_id=IGNORED)

    # ------------------------------------------------------------------ model
    def model_class(self):
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def label_config(self, task: Task) -> dict[str, Any]:
        return class_head_config(task)

    def predict(self, model, batch: dict, options: FormatOptions) -> list[list[int]]:
        """Per window, the predicted tag ids of its words' first sub-words, in word order."""
        first_subwords = batch.pop("labels") != IGNORED
        predicted = model(**batch).logits.argmax(dim=-1)
        return [row[mask].tolist() for row, mask in zip(predicted, first_subwords)]

    def score(self, task: Task, rows, features, predictions: list[list[int]], lang: str, options: FormatOptions) -> dict[str, float]:
        from xit_dist.evaluate.metrics import accuracy, tagging_f1

        gold, predicted = sentences_from_windows(features[SENTENCE_COLUMN], features["labels"], predictions)
        if task.metric == "f1":
            names = task.label_names
            return {"f1": tagging_f1([[names[t] for t in s] for s in gold], [[names[t] for t in s] for s in predicted])}
        if task.metric == "accuracy":
            return {"accuracy": accuracy([t for s in gold for t in s], [t for s in predicted for t in s])}
        raise ValueError(f"{task.name}: token tagging scores 'f1' or 'accuracy', not {task.metric!r}")

    def num_examples(self, rows, features) -> int:
        return len(set(features[SENTENCE_COLUMN]))


# ---------------------------------------------------------------------- helpers


def subword_counts(tokenizer, sentences: list[list[str]]) -> list[list[int]]:
    """Sub-words per word, as ``is_split_into_words`` tokenises each word on its own."""
    if not sentences:
        return []
    encoded = tokenizer(sentences, is_split_into_words=True, add_special_tokens=False)
    counts = []
    for i, words in enumerate(sentences):
        per_word = [0] * len(words)
        for word in encoded.word_ids(i):
            if word is not None:
                per_word[word] += 1
        counts.append(per_word)
    return counts


def word_windows(pieces: list[int], budget: int) -> Iterator[tuple[int, int]]:
    """(start, end) word ranges, each holding at most ``budget`` sub-words (a longer single word
    gets a window of its own), in order and covering every word."""
    start, used = 0, 0
    for index, count in enumerate(pieces):
        if used and used + count > budget:
            yield start, index
            start, used = index, 0
        used += count
    if pieces:
        yield start, len(pieces)


def first_subword_labels(word_ids: list[int | None], tags: list[int]) -> list[int]:
    """The word's tag on its first sub-word; -100 on its other sub-words and on special tokens.
    Every word must keep its first sub-word (``word_windows`` makes sure of it)."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(tags[word] if word is not None and word != previous else IGNORED)
        previous = word
    labelled = sum(label != IGNORED for label in labels)
    if labelled != len(tags):
        raise RuntimeError(f"{len(tags) - labelled} of {len(tags)} words lost their first sub-word")
    return labels


def sentences_from_windows(sentence_of_window: list[int], labels: list[list[int]], predictions: list[list[int]]):
    """Gold and predicted tag ids per sentence, joining a sentence's consecutive windows."""
    gold: dict[int, list[int]] = {}
    predicted: dict[int, list[int]] = {}
    for sentence, window_labels, window_predictions in zip(sentence_of_window, labels, predictions):
        gold.setdefault(sentence, []).extend(label for label in window_labels if label != IGNORED)
        predicted.setdefault(sentence, []).extend(window_predictions)
    return list(gold.values()), list(predicted.values())


def _row_problem(words: list[str] | None, tags: list[int] | None, num_labels: int, texts: Iterable[str] | None = None) -> str | None:
    if not words:
        return "empty sentence (no tokens)"
    if tags is None or len(words) != len(tags):
        return f"length mismatch: {len(words)} tokens but {0 if tags is None else len(tags)} tags"
    for position, tag in enumerate(tags):
        if tag is None or not 0 <= tag < num_labels:
            written = f" ({list(texts)[position]!r})" if texts else ""
            return f"tag out of range: word {position} has tag id {tag}{written}, not in 0..{num_labels - 1}"
    return None
