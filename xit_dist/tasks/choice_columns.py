"""Column roles of a multiple-choice data set (``DataSource.columns`` of the multiple-choice
format). Kept apart from the format so task modules can name their columns without importing
the format machinery."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChoiceColumns:
    """Where a row's context, choices and gold answer live.

    ``context``: columns joined by a space (Cosmos QA: the passage, then the question).
    ``choices``: one list column (``"endings"``), a list inside a struct (``"choices.text"``),
    or one column per choice (``("answer0", "answer1", ...)``).
    ``choice_prefix``: a column written before every choice (HellaSwag's ``ctx_b``, the start of
    the sentence the endings complete).
    ``label``: the gold column. Its raw value is the choice index, unless ``label_values`` lists
    the raw values in choice order (HellaSwag's ``"0"``..``"3"``) or ``label_keys`` names a
    per-row list to look it up in (CommonsenseQA's ``answerKey`` in ``choices.label``).
    ``question`` / ``connectives``: COPA's ``cause`` / ``effect`` column and the word each one
    appends to the context (``(("cause", "because"), ("effect", "so"))``).
    """

    context: tuple[str, ...]
    choices: str | tuple[str, ...]
    label: str
    label_values: tuple[str, ...] | None = None
    label_keys: str | None = None
    choice_prefix: str | None = None
    question: str | None = None
    connectives: tuple[tuple[str, str], ...] = ()

    def needed(self) -> list[str]:
        """The top-level columns the reader touches."""
        names = [*self.context, *([self.choices] if isinstance(self.choices, str) else self.choices), self.label]
        names += [name for name in (self.label_keys, self.choice_prefix, self.question) if name]
        return list(dict.fromkeys(name.split(".")[0] for name in names))
