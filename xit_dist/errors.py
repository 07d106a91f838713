"""Errors a user can cause. The CLI prints each as one line and exits with code 2,
before any cluster resources are used."""


class XitError(Exception):
    """Base class: a mistake in the user's input (spec, data, address, tracking URI)."""

    exit_code = 2


class SpecError(XitError, ValueError):
    """The experiment spec is malformed or names something that does not exist.

    Also a ValueError, so that pydantic validators raising it report the field's path."""


class DataError(XitError):
    """A data file or hub data set is missing, unreadable or not in the expected schema."""


class ModelError(XitError):
    """The model or tokenizer named in the spec cannot be loaded."""
