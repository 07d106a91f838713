"""Study 3: adversarial augmentation of a stage's training rows (hub schema, before
featurisation), each kind label-preserving, seeded and documented.

Which rows: row i of a source is augmented when
``Random(f"xit-augment/{seed}/{source}/{i}").random() < rate``; the same generator then picks
the kind (uniformly among ``kinds``) and drives the edit, so a row's augmentation depends only
on (seed, source, row index, kinds), not on batching or workers.
``mode: replace`` (default) swaps the augmented rows in for the originals, so the training set
keeps its size and the comparison with/without isolates the content; ``mode: add`` keeps every
original row and appends the augmented copies after them (about ``rate`` x more rows).

Kinds for pair classification (``PairColumns``; NLI stress tests after Naik et al. 2018,
appended to the hypothesis = ``text_b``, or to ``text_a`` for single-sentence tasks):

- ``word_overlap``: append "and true is true" (a tautology: the label cannot change);
- ``negation``: append "and false is not true" (a negation word that changes nothing);
- ``length_mismatch``: append "and true is true" five times to the premise (``text_a``);
- ``spelling``: swap two adjacent characters inside one word (of 3+ characters) of the hypothesis;
- ``char_noise``: in ``noise`` of the words (at least one) of every text, one character edit:
  delete, duplicate, or swap with its neighbour;
- ``word_noise``: each word is dropped or swapped with its right neighbour with probability
  ``noise`` (at least one edit; at least one word stays).

Kinds for extractive QA (``QAColumns``; the gold answer never moves out of reach: the context
is only appended to, or rewritten unit by unit around the protected answer tokens with every
``answer_start`` recomputed, via ``xit_dist.data.perturb``):

- ``distractor`` (AddOneSent-style, Jia & Liang 2017): one sentence appended to the context that
  resembles the question with its entities changed: numbers get another value, capitalised
  words (not the first) and, when there are none, one other content word are replaced by
  context words absent from the question; a fake answer (a context span as long as the gold
  answer that is not a gold answer) takes the question mark's place. A distractor that would
  contain a gold answer is not used (the row is left as it is);
- ``char_noise`` / ``word_noise``: as above, on the question and on the context outside the
  gold answer spans.

Rows that are empty where an edit is needed are left unchanged (and, with ``mode: add``, not added).
"""

from __future__ import annotations

import random
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from xit_dist.data.perturb import Unit, locate_answers, rewrite_context, transform_text

AUGMENT_VERSION = "1"
PAIR_KINDS = ("word_overlap", "negation", "length_mismatch", "spelling", "char_noise", "word_noise")
QA_KINDS = ("distractor", "char_noise", "word_noise")
TAUTOLOGY = "and true is true"
NEGATED_TAUTOLOGY = "and false is not true"
LENGTH_REPEATS = 5
SENTENCE_END = ".!?。！？"


class AugmentOptions(BaseModel):
    """A stage's ``augment:`` block."""

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(..., gt=0, le=1, description="probability that a training row is augmented")
    kinds: list[str] | None = Field(None, min_length=1, description="default: every kind the task's format offers")
    mode: Literal["replace", "add"] = "replace"
    noise: float = Field(0.1, gt=0, lt=1, description="char_noise / word_noise: share of words edited")
    seed: int = 0


def format_kinds(columns) -> tuple[str, ...]:
    """The augmentation kinds a task's column roles allow."""
    if all(isinstance(getattr(columns, role, None), str) for role in ("question", "context", "answers")):
        return QA_KINDS
    if isinstance(getattr(columns, "text_a", None), str):
        return PAIR_KINDS
    return ()


def check_kinds(task, options: AugmentOptions) -> None:
    """ValueError naming the offered kinds when the task's format has none or others."""
    offered = format_kinds(task.train_sources[0].columns)
    if not offered:
        raise ValueError(f"task {task.name!r} ({task.format}) has no augmentations; they exist for pair classification and extractive QA")
    unknown = [kind for kind in options.kinds or () if kind not in offered]
    if unknown:
        raise ValueError(f"{unknown} not offered for {task.name!r} ({task.format}); known: {list(offered)}")


# ------------------------------------------------------------------------- text edits


def append_clause(text: str, clause: str) -> str:
    """``text`` + clause, before the sentence's final punctuation ("A man sleeps and true is true.")."""
    stripped = text.rstrip()
    end = stripped[-1] if stripped and stripped[-1] in SENTENCE_END else ""
    body = stripped[: len(stripped) - len(end)].rstrip()
    return f"{body} {clause}{end}" if body else f"{clause}{end}"


def swap_adjacent_characters(word: str, rng: random.Random) -> str:
    if len(word) < 2:
        return word
    i = rng.randrange(len(word) - 1)
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def misspell(text: str, rng: random.Random) -> str:
    """Swap two adjacent characters inside one word of 3+ word characters."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\w{3,}", text)]
    if not words:
        return text
    start, end = rng.choice(words)
    word = text[start:end]
    for _ in range(10):  # "aab": most swaps change it; a word of one letter repeated cannot change
        edited = swap_adjacent_characters(word, rng)
        if edited != word:
            break
    return text[:start] + edited + text[end:]


def character_edit(word: str, rng: random.Random) -> str:
    if len(word) < 2:
        return word + word  # duplicate a one-character word
    i = rng.randrange(len(word))
    edit = rng.choice(("delete", "duplicate", "swap"))
    if edit == "delete":
        return word[:i] + word[i + 1 :]
    if edit == "duplicate":
        return word[: i + 1] + word[i] + word[i + 1 :]
    return swap_adjacent_characters(word, rng)


def char_noise(noise: float, rng: random.Random):
    """A unit transform: one character edit in ``noise`` of the free units (at least one)."""

    def transform(text: str, units: list[Unit]):
        free = [u for u in units if not u.protected]
        if not free:
            return units, {}
        count = max(1, round(noise * len(free)))
        chosen = rng.sample(free, min(count, len(free)))
        return units, {u.start: character_edit(text[u.start : u.end], rng) for u in chosen}

    return transform


def word_noise(noise: float, rng: random.Random):
    """A unit transform: each free unit is dropped or swapped with its right neighbour with
    probability ``noise``; at least one edit, at least one unit kept."""

    def transform(text: str, units: list[Unit]):
        units = list(units)
        free = [i for i, u in enumerate(units) if not u.protected]
        if not free:
            return units, {}
        edits = [i for i in free if rng.random() < noise] or [rng.choice(free)]
        dropped: set[int] = set()
        for i in edits:
            if rng.random() < 0.5 and i + 1 < len(units):
                units[i], units[i + 1] = units[i + 1], units[i]
            else:
                dropped.add(units[i].start)
        kept = [u for u in units if u.start not in dropped]
        return (kept or units[:1]), {}

    return transform


# ------------------------------------------------------------------------- QA distractor


NUMBER = re.compile(r"^\d+([.,]\d+)?$")


def distractor_sentence(question: str, context: str, gold: list[str], rng: random.Random) -> str | None:
    """A declarative-looking sentence resembling the question with its entities changed and a
    fake answer; None when none can be made without a gold answer in it."""
    words = question.strip().rstrip("?？").split()
    if not words:
        return None
    asked = set(words)
    pool = sorted({w.strip(".,;:!?。，") for w in context.split()} - asked - {""})
    gold_words = {w for text in gold for w in text.split()}
    pool = [w for w in pool if w not in gold_words] or pool
    for _ in range(5):
        changed = list(words)
        edited = False
        for i, word in enumerate(words):
            if NUMBER.match(word):
                changed[i] = str(int(float(word.replace(",", "."))) + rng.randint(1, 9))
                edited = True
            elif i and word[:1].isupper() and pool:
                capitalised = [w for w in pool if w[:1].isupper()] or pool
                changed[i] = rng.choice(capitalised)
                edited = True
        content = [i for i, w in enumerate(words) if i and len(w) >= 3 and not NUMBER.match(w)]
        if not edited and content and pool:
            changed[rng.choice(content)] = rng.choice(pool)
        fake = fake_answer(context, gold, rng)
        if fake is None:
            return None
        sentence = " ".join(changed + [fake]) + "."
        if not any(text and text in sentence for text in gold):
            return sentence
    return None


def fake_answer(context: str, gold: list[str], rng: random.Random) -> str | None:
    """A span of context words as long (in words) as the first gold answer, not a gold answer."""
    words = [w.strip(".,;:!?。，") for w in context.split()]
    length = max(1, len(gold[0].split())) if gold else 1
    candidates = {" ".join(words[i : i + length]) for i in range(len(words) - length + 1)}
    candidates = sorted(c for c in candidates if c and not any(c == g or c in g or g in c for g in gold))
    return rng.choice(candidates) if candidates else None


# ------------------------------------------------------------------------- rows


def augment_pair_row(row: dict, columns, kind: str, options: AugmentOptions, rng: random.Random) -> dict | None:
    a, b = columns.text_a, columns.text_b
    hypothesis = b if b and row.get(b) else a
    if not row.get(hypothesis):
        return None
    out = dict(row)
    if kind == "word_overlap":
        out[hypothesis] = append_clause(row[hypothesis], TAUTOLOGY)
    elif kind == "negation":
        out[hypothesis] = append_clause(row[hypothesis], NEGATED_TAUTOLOGY)
    elif kind == "length_mismatch":
        out[a] = append_clause(row[a], " ".join([TAUTOLOGY] * LENGTH_REPEATS))
    elif kind == "spelling":
        out[hypothesis] = misspell(row[hypothesis], rng)
    else:
        transform = char_noise if kind == "char_noise" else word_noise
        for column in (a, b):
            if column and row.get(column):
                out[column] = transform_text(row[column], transform(options.noise, rng))[0]
    return out


def augment_qa_row(row: dict, columns, kind: str, options: AugmentOptions, rng: random.Random) -> dict | None:
    roles = {"context": columns.context, "answers": columns.answers}
    context, question, answers = row[columns.context], row[columns.question], row[columns.answers]
    if not context or not question or locate_answers(context, answers) is None:
        return None
    out = dict(row)
    if kind == "distractor":
        sentence = distractor_sentence(question, context, list(answers["text"]), rng)
        if sentence is None:
            return None
        out[columns.context] = context.rstrip() + " " + sentence  # appended: every answer_start stays valid
        return out
    transform = char_noise if kind == "char_noise" else word_noise
    out[columns.question] = transform_text(question, transform(options.noise, rng))[0]
    out.update(rewrite_context(row, roles, transform(options.noise, rng)) or {})
    return out


def augment_row(row: dict, index: int, columns, kinds: tuple[str, ...], options: AugmentOptions, stream: str = "") -> dict | None:
    """The augmented row, or None when row ``index`` is not drawn (or cannot be augmented).
    ``stream`` names the source, so that two sources of one task draw independently."""
    rng = random.Random(f"xit-augment/{options.seed}/{stream}{index}")
    if rng.random() >= options.rate:
        return None
    kind = rng.choice(kinds)
    if format_kinds(columns) == QA_KINDS:
        return augment_qa_row(row, columns, kind, options, rng)
    return augment_pair_row(row, columns, kind, options, rng)


def augment_rows(rows, source, options: AugmentOptions):
    """A stage's training rows of one source, augmented (a `datasets` map, cached by fingerprint)."""
    from xit_dist.data.hub_schema import derived_fingerprint

    columns = source.columns
    offered = format_kinds(columns)
    kinds = tuple(options.kinds or offered)
    add = options.mode == "add"
    stream = f"{source.hub_id}/{source.config}/{source.split}/{source.language or ''}/"

    def apply(batch: dict, indices: list[int]) -> dict:
        names = list(batch)
        out: dict[str, list] = {name: [] for name in names}
        for position, index in enumerate(indices):
            row = {name: batch[name][position] for name in names}
            augmented = augment_row(row, index, columns, kinds, options, stream)
            if add and augmented is None:
                continue
            for name in names:
                out[name].append((augmented or row)[name])
        return out

    augmented = rows.map(
        apply,
        batched=True,
        with_indices=True,
        features=rows.features,
        remove_columns=rows.column_names,
        new_fingerprint=derived_fingerprint(rows, "augment", AUGMENT_VERSION, options.model_dump_json(), kinds),
    )
    if not add:
        return augmented
    from datasets import concatenate_datasets

    return concatenate_datasets([rows, augmented])
