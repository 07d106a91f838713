"""Reading the YAML files a user writes (a spec, a grid, a search spec, a ``base``, a search's
``best.yaml``): UTF-8 text only, a mapping at the top, and any mistake one line naming the file
and, for invalid YAML, the line."""

from __future__ import annotations

import codecs
from pathlib import Path

import yaml

from xit_dist.errors import SpecError


def read_yaml_mapping(path: str | Path, what: str | None = None) -> dict:
    """A YAML file whose top level is a mapping (a spec, a grid, a search spec, a ``base``);
    SpecError naming the file (after ``what``, when given) and the line."""
    path = Path(path)
    label = f"{what}: {path}" if what else str(path)
    if not path.is_file():
        raise SpecError(f"{label}: spec file not found")
    try:
        tree = yaml.safe_load(read_spec_text(path, label))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SpecError(f"{label}:{where}: invalid YAML: {problem}") from None
    if not isinstance(tree, dict):
        raise SpecError(f"{label}: expected a mapping at the top level, got {type(tree).__name__}")
    return tree


_WIDE_ENCODINGS = (  # byte order marks of encodings YAML allows but xit-dist does not read (UTF-32 first: it starts like UTF-16)
    (codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"), (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"),
)


def read_spec_text(path: Path, label: str) -> str:
    """The text of a spec file, which must be UTF-8 (a UTF-8 byte order mark is allowed).

    Anything else is refused in one line naming the file, rather than decoded by a guess: the
    same file is read again on the cluster (``submit``) and by Ray's workers."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SpecError(f"{label}: cannot read the file: {err.strerror}") from None
    wide = next((name for bom, name in _WIDE_ENCODINGS if raw.startswith(bom)), None)
    if wide:
        raise SpecError(f"{label}: the file is {wide} text; save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SpecError(f"{label}: not UTF-8 text (byte {err.start + 1} is 0x{raw[err.start]:02x}); save it as UTF-8") from None
