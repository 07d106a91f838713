"""The errors xit-dist reports to its user: the CLI prints one as a single line (no traceback)
and exits with its ``exit_code``.

- 2 (``XitError`` and the kinds below): a mistake in what the user gave (spec, data, model,
  address, tracking URI). Most are found by validation and the preflight, before any cluster
  resources are used; a few only show once the work reads what it was given (a search none of
  whose trials finished, say).
- 1: a run that started and could not finish: ``DiskFullError``, and ``GridFailed``
  when some of a grid's phases or evaluations failed. Rerunning the same
  command resumes (once there is space again, for a full disk).
"""

from __future__ import annotations

import errno


class XitError(Exception):
    """Base class of every error said as one line; raised as itself, a mistake in the user's
    input (spec, data, address, tracking URI)."""

    exit_code = 2


class SpecError(XitError, ValueError):
    """The experiment spec is malformed or names something that does not exist.

    Also a ValueError, so that pydantic validators raising it report the field's path."""


class DataError(XitError):
    """A data file or hub data set is missing, unreadable or not in the expected schema."""


class ModelError(XitError):
    """The model or tokenizer named in the spec cannot be loaded."""


class DiskFullError(XitError):
    """A write under output_dir failed for want of space: said as the run's one error line,
    whatever failed after it (MLflow's store on the same disk, Ray's clean-up)."""

    exit_code = 1


class GridFailed(XitError):
    """Some of a grid's phases or evaluations failed; the rest of the grid ran. Rerunning resumes."""

    exit_code = 1


def find_disk_full(err: BaseException) -> OSError | None:
    """The ``No space left on device`` behind ``err``: in its cause chain, or among the failures
    of a Ray Train run's workers or controller."""
    todo, seen = [err], set()
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return current
        todo += [current.__cause__, current.__context__, getattr(current, "controller_failure", None)]
        todo += list((getattr(current, "worker_failures", None) or {}).values())
    return None
