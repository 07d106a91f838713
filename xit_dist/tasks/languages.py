"""Language metadata (``languages.yaml``): per task, the languages each benchmark evaluates;
per language, its family, script and XLM-R pretraining-data group (low / mid / high), which the
robustness studies average over. Kept as data so the lists live in one reviewed place."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml

from xit_dist.errors import SpecError

METADATA_FILE = Path(__file__).with_name("languages.yaml")
SOURCE_LANGUAGE = "en"  # the language every phase trains and selects its model in; the others are zero-shot
HIGH_RESOURCE_GIB = 50.0
MID_RESOURCE_GIB = 5.0
Benchmark = Literal["xtreme", "xtreme-r"]


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    family: str
    script: str
    cc100_gib: float

    @property
    def resource_group(self) -> Literal["low", "mid", "high"]:
        if self.cc100_gib >= HIGH_RESOURCE_GIB:
            return "high"
        return "mid" if self.cc100_gib >= MID_RESOURCE_GIB else "low"


@lru_cache(maxsize=1)
def _metadata() -> dict:
    return yaml.safe_load(METADATA_FILE.read_text(encoding="utf-8"))


def language(code: str) -> Language:
    try:
        return Language(code, **_metadata()["languages"][code])
    except KeyError:
        raise SpecError(f"unknown language {code!r}; {METADATA_FILE.name} knows {', '.join(sorted(_metadata()['languages']))}") from None


def all_languages() -> list[Language]:
    return [language(code) for code in sorted(_metadata()["languages"])]


def task_languages(task: str, benchmark: Benchmark = "xtreme") -> tuple[str, ...]:
    """The task's languages in ``benchmark``; a task in only one benchmark answers with that one's."""
    entry = _metadata()["tasks"][task]
    chosen = entry.get(benchmark)
    if chosen == "same":
        chosen = entry["xtreme"]
    if chosen is None:
        other = "xtreme-r" if benchmark == "xtreme" else "xtreme"
        chosen = entry[other] if entry.get(other) != "same" else entry["xtreme"]
    return tuple(chosen)


def benchmark_tasks(benchmark: Benchmark) -> list[str]:
    return [task for task, entry in _metadata()["tasks"].items() if benchmark in entry]


def benchmark_languages(benchmark: Benchmark) -> list[str]:
    return sorted({lang for task in benchmark_tasks(benchmark) for lang in task_languages(task, benchmark)})


def resource_groups(codes) -> dict[str, list[str]]:
    """low / mid / high -> the given languages in that group (for per-group averages)."""
    groups: dict[str, list[str]] = {"low": [], "mid": [], "high": []}
    for code in codes:
        groups[language(code).resource_group].append(code)
    return groups
