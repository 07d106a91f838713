"""Study 4: evaluation-time syntactic perturbations of the target-language inputs.

Three perturbations, each seeded per row (``random.Random(f"{seed}/{name}/{row}/{column}")``:
the same row is perturbed the same way whatever the batch size or the number of workers):

- ``shuffle``: local word-order shuffle: the text's units are cut into consecutive windows of
  ``window`` units and each window is shuffled (a window's order always changes when it can).
- ``clause_reorder``: the text is cut after clause and sentence punctuation (``, ; : . ! ?`` and
  their CJK forms) and the clauses are put in a new random order (each keeps its punctuation).
- ``delete``: each unit is deleted with probability ``rate`` (at least one unit is kept).

Language-agnostic units: white-space separated tokens, or, for text written without spaces
(Chinese, Japanese), single characters. The gold answer stays within reach: in a QA context,
the tokens overlapping a gold answer span are one unit that is never split, shuffled inside or
deleted (it may move as a whole, like any other unit), and each ``answer_start`` is recomputed
for the new text, so ``context[start:start + len(text)] == text`` still holds. A clause holding
an answer moves as a whole. A row whose gold answer is not found in its context keeps its
context unchanged (it is counted in ``perturbation_report``). Units are rejoined with one space
(or nothing, for character units); text inside a unit keeps its characters.

``apply_to`` names column roles of the task's format: ``question`` / ``context`` for extractive
QA (``QAColumns``), ``text_a`` / ``text_b`` for pair classification (``PairColumns``).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PERTURB_VERSION = "1"
CLAUSE_END = frozenset(",;:.!?，；：。！？、")
KINDS = ("shuffle", "clause_reorder", "delete")


class PerturbationOptions(BaseModel):
    """One entry of ``evaluation.perturbations``."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["shuffle", "clause_reorder", "delete"]
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]+$", description="metric key suffix; default: the kind")
    apply_to: list[str] = Field(default_factory=lambda: ["question"], min_length=1, description="column roles to perturb")
    window: int = Field(3, ge=2, description="shuffle: units per window")
    rate: float = Field(0.1, gt=0, lt=1, description="delete: probability of deleting each unit")
    seed: int = 0

    @model_validator(mode="after")
    def _default_name(self) -> "PerturbationOptions":
        if self.name is None:
            self.name = self.kind
        return self


@dataclass(frozen=True)
class Unit:
    start: int  # character span in the original text
    end: int
    protected: bool


def units_of(text: str, protected: list[tuple[int, int]] = ()) -> tuple[list[Unit], str]:
    """The text's units and the separator that rejoins them (" " or "" for unspaced scripts).
    Consecutive tokens overlapping a protected span are merged into one protected unit."""
    tokens = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    separator = " "
    if len(tokens) == 1 and len(text.strip()) > 1:  # no spaces: Chinese, Japanese
        tokens = [(i, i + 1) for i, ch in enumerate(text) if not ch.isspace()]
        separator = ""
    units: list[Unit] = []
    for start, end in tokens:
        hit = any(start < p_end and p_start < end for p_start, p_end in protected)
        if hit and units and units[-1].protected and _shares_a_span(units[-1], start, end, protected):
            units[-1] = Unit(units[-1].start, end, True)
        else:
            units.append(Unit(start, end, hit))
    return units, separator


def _shares_a_span(previous: Unit, start: int, end: int, protected) -> bool:
    """True when one protected span overlaps both the previous unit and the token [start, end)."""
    return any(a < previous.end and previous.start < b and a < end and start < b for a, b in protected)


def rejoin(text: str, units: list[Unit], separator: str, replacements: dict[int, str] | None = None) -> tuple[str, dict[int, int]]:
    """The new text and, for each unit's original start, its new start. ``replacements`` gives
    new text for some units (keyed by their original start; never a protected unit's)."""
    replacements = replacements or {}
    pieces, moved, position = [], {}, 0
    for index, unit in enumerate(units):
        if index:
            pieces.append(separator)
            position += len(separator)
        moved[unit.start] = position
        piece = replacements.get(unit.start, text[unit.start : unit.end])
        pieces.append(piece)
        position += len(piece)
    return "".join(pieces), moved


def shuffle_units(units: list[Unit], window: int, rng: random.Random) -> list[Unit]:
    out = []
    for begin in range(0, len(units), window):
        chunk = units[begin : begin + window]
        original = list(chunk)
        if len(chunk) > 1:
            for _ in range(10):  # a different order when one exists
                rng.shuffle(chunk)
                if chunk != original:
                    break
        out.extend(chunk)
    return out


def delete_units(units: list[Unit], rate: float, rng: random.Random) -> list[Unit]:
    kept = [unit for unit in units if unit.protected or rng.random() >= rate]
    return kept or units[:1]


def clause_groups(text: str, units: list[Unit]) -> list[list[Unit]]:
    """Units grouped into clauses: a clause ends with a unit whose text ends in clause or
    sentence punctuation (a protected unit is never split, so a clause holding an answer moves whole)."""
    groups, current = [], []
    for unit in units:
        current.append(unit)
        if text[unit.end - 1] in CLAUSE_END:
            groups.append(current)
            current = []
    if current:
        groups.append(current)
    return groups


def reorder_clauses(text: str, units: list[Unit], rng: random.Random) -> list[Unit]:
    groups = clause_groups(text, units)
    original = list(groups)
    if len(groups) > 1:
        for _ in range(10):
            rng.shuffle(groups)
            if groups != original:
                break
    return [unit for group in groups for unit in group]


Transform = Callable[[str, list[Unit]], "tuple[list[Unit], dict[int, str]]"]


def transform_text(text: str, transform: Transform, protected: list[tuple[int, int]] = ()) -> tuple[str, dict[int, int]]:
    """Apply ``transform`` (text, units -> new unit order, replacement texts) and rejoin; returns
    the new text and the map from each protected span's original start to its new start."""
    units, separator = units_of(text, protected)
    if not units:
        return text, {}
    units, replacements = transform(text, units)
    new_text, moved = rejoin(text, units, separator, replacements)
    starts = {}
    for p_start, _ in protected:
        owner = next(u for u in units if u.start <= p_start < u.end)
        starts[p_start] = moved[owner.start] + p_start - owner.start
    return new_text, starts


def perturbation(options: PerturbationOptions, rng: random.Random) -> Transform:
    def transform(text: str, units: list[Unit]) -> tuple[list[Unit], dict[int, str]]:
        if options.kind == "shuffle":
            return shuffle_units(units, options.window, rng), {}
        if options.kind == "delete":
            return delete_units(units, options.rate, rng), {}
        return reorder_clauses(text, units, rng), {}

    return transform


def locate_answers(context: str, answers: dict) -> list[tuple[int, int]] | None:
    """Character spans of the gold answers; None when one is not found, or starts or ends with
    white space (no unit holds its first character): the row is then left alone."""
    spans = []
    for answer, start in zip(answers["text"], answers["answer_start"]):
        if not answer or answer != answer.strip():
            return None
        if context[start : start + len(answer)] != answer:
            start = context.find(answer)
            if start < 0:
                return None
        spans.append((start, start + len(answer)))
    return spans


def rewrite_context(row: dict, roles: dict[str, str], transform: Transform) -> dict | None:
    """The row's context column (and answers) after ``transform``, with every gold answer kept
    whole and its ``answer_start`` recomputed; None when the answers cannot be located."""
    context, answers = row[roles["context"]], row[roles["answers"]]
    spans = locate_answers(context, answers)
    if spans is None:
        return None
    new_context, starts = transform_text(context, transform, spans)
    return {roles["context"]: new_context, roles["answers"]: {**answers, "answer_start": [starts[s] for s, _ in spans]}}


def perturb_row(row: dict, index: int, roles: dict[str, str], options: PerturbationOptions) -> dict:
    """One row (hub schema) perturbed; ``roles`` maps a role to its column (``context``,
    ``answers``, ``question``, ``text_a``...)."""
    out = dict(row)
    for role in options.apply_to:
        column = roles[role]
        if not row[column]:
            continue
        rng = random.Random(f"{options.seed}/{options.name}/{index}/{role}")
        if role == "context" and "answers" in roles:
            out.update(rewrite_context(row, roles, perturbation(options, rng)) or {})
        else:
            out[column] = transform_text(row[column], perturbation(options, rng))[0]
    return out


def column_roles(source, apply_to: list[str]) -> dict[str, str]:
    """Role -> column for the roles asked for (plus ``answers`` when a QA context is perturbed);
    raises ValueError naming the roles the task's format offers."""
    columns = source.columns
    offered = [role for role in ("question", "context", "text_a", "text_b") if isinstance(getattr(columns, role, None), str)]
    unknown = [role for role in apply_to if role not in offered]
    if unknown:
        raise ValueError(f"apply_to {unknown}: this task's columns offer {offered}")
    roles = {role: getattr(columns, role) for role in apply_to}
    if "context" in apply_to and isinstance(getattr(columns, "answers", None), str):
        roles["answers"] = columns.answers
    return roles


def perturb_rows(rows, source, options: PerturbationOptions):
    """Every row of an evaluation split perturbed (a `datasets` map, cached by fingerprint)."""
    from xit_dist.data.hub_schema import derived_fingerprint

    roles = column_roles(source, options.apply_to)

    def apply(batch: dict, indices: list[int]) -> dict:
        names = list(batch)
        perturbed = [
            perturb_row({name: batch[name][i] for name in names}, index, roles, options) for i, index in enumerate(indices)
        ]
        return {name: [row[name] for row in perturbed] for name in names}

    return rows.map(
        apply,
        batched=True,
        with_indices=True,
        features=rows.features,
        new_fingerprint=derived_fingerprint(rows, "perturb", PERTURB_VERSION, options.model_dump_json()),
    )
