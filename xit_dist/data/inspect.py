"""`xit-dist data TASK`: load a task through the same loader and format a run uses, and show
what a run would see: rows per split and language, labels, token lengths, and the rows the
format drops with the reason. Nothing is trained; no Ray."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xit_dist.data.drops import SplitDrops, split_drops
from xit_dist.data.loading import load_source
from xit_dist.errors import DataError, SpecError
from xit_dist.tasks.registry import get_task
from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.formats import get_format
from xit_dist.tasks.formats.options import FormatOptions

PERCENTILES = (50, 90, 95, 99, 100)


@dataclass
class SplitReport:
    split: str
    language: str
    source: str
    rows: int
    labels: Counter | None
    lengths: dict[int, int]
    truncated: int
    drops: SplitDrops


def sources_to_inspect(task: Task, split: str, languages: list[str]) -> list[tuple[str, DataSource]]:
    if split == "train":
        if not task.train_sources:
            raise SpecError(f"{task.name} has no training data (it is evaluation-only); use --split validation or test")
        return [("en", source) for source in task.train_sources]
    if split not in task.eval_splits:
        raise SpecError(f"--split {split}: {task.name} has {['train', *task.eval_splits]}")
    return [(lang, task.eval_source(split, lang)) for lang in languages]


def inspect_split(task: Task, lang: str, source: DataSource, data_dir: Path | None, tokenizer, options: FormatOptions) -> SplitReport:
    fmt = get_format(task.format)
    rows = load_source(source, data_dir)
    features = fmt.featurize(task, rows, source, tokenizer, options, for_eval=True)
    lengths = np.array(fmt.feature_lengths(features) or [0])
    return SplitReport(
        split=f"{source.hub_id.rsplit('/', 1)[-1]}:{source.split}",
        language=lang,
        source=source.describe(),
        rows=len(rows),
        labels=fmt.label_counts(task, rows, source),
        lengths={p: int(np.percentile(lengths, p)) for p in PERCENTILES},
        truncated=int((lengths >= options.max_seq_length).sum()),
        drops=split_drops(task, source, rows),
    )


def render(task: Task, reports: list[SplitReport], options: FormatOptions, tokenizer_name: str) -> str:
    lines = [f"{task.name} ({task.format}): {task.description}"]
    header = f"{'source:split':<26}{'lang':<6}{'rows':>8}{'dropped':>9}  tokens " + "/".join(f"p{p}" for p in PERCENTILES)
    lines += [header, "-" * len(header)]
    for r in reports:
        percentiles = "/".join(str(r.lengths[p]) for p in PERCENTILES)
        lines.append(f"{r.split:<26}{r.language:<6}{r.rows:>8}{r.drops.dropped:>9}  {percentiles}")
    lines.append(
        f"(tokens per feature with the tokenizer of {tokenizer_name}; longer inputs are cut at max_seq_length "
        f"{options.max_seq_length}, or split into windows by formats that do: QA, tagging)"
    )
    for r in reports:
        extra = []
        if r.labels:
            total = sum(r.labels.values())
            extra.append("labels: " + ", ".join(f"{name} {count} ({100 * count / total:.1f}%)" for name, count in r.labels.most_common()))
        if r.truncated:
            extra.append(f"{r.truncated} features reach max_seq_length {options.max_seq_length} (truncated or split)")
        if r.drops.dropped:
            extra.append(f"dropped {r.drops.dropped} rows: " + "; ".join(f"{reason} ({n})" for reason, n in r.drops.reasons.items()))
            extra += [f"  row {row}: {reason}" for row, reason in r.drops.examples]
        if extra:
            lines.append(f"\n{r.split} {r.language} — {r.source}")
            lines += [f"  {line}" for line in extra]
    return "\n".join(lines)


def inspect_task(
    task_name: str,
    split: str = "train",
    languages: list[str] | None = None,
    data_files: list[str] | None = None,
    model: str = "builtin:xlmr-tiny",
    max_seq_length: int = 256,
) -> str:
    from transformers import AutoTokenizer

    from xit_dist.builtin.assets import resolve_data_dir, resolve_model_dir

    task = get_task(task_name)
    unknown = [lang for lang in languages or [] if lang not in task.languages and lang not in (task.languages_xtreme_r or ())]
    if unknown:
        raise SpecError(f"--lang {unknown}: not languages of {task.name} ({', '.join(task.languages)})")
    data_dir = None
    if data_files:
        if len(data_files) != 1:
            raise SpecError(f"--data-files: give one path; {MIRROR_LAYOUT}")
        data_dir = resolve_data_dir(data_files[0])
        if not data_dir.exists():
            raise DataError(f"--data-files {data_files[0]}: not found; {MIRROR_LAYOUT}")
    sources = sources_to_inspect(task, split, languages or list(task.languages))
    if data_dir is not None and data_dir.is_file():
        check_one_file_fits(task, split, data_dir, [source for _, source in sources])
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(model))
    options = FormatOptions(max_seq_length=max_seq_length)
    reports = [inspect_split(task, lang, source, data_dir, tokenizer, options) for lang, source in sources]
    return render(task, reports, options, model)


MIRROR_LAYOUT = (
    "give one file for one split of one source, or a directory laid out as <hub_id>/<config>/<split>.<ext> "
    "(or holding the task's release files)"
)


def check_one_file_fits(task: Task, split: str, path: Path, sources: list[DataSource]) -> None:
    """One file stands for one split of one source; say which sources the split reads otherwise."""
    if any(source.reader is not None for source in sources):
        raise SpecError(f"--data-files {path}: {task.name} reads its release files from a directory, not one file")
    if len(sources) != 1:
        names = "; ".join(source.describe() for source in sources)
        raise SpecError(
            f"--data-files {path}: {task.name} --split {split} reads {len(sources)} sources ({names}); "
            "give a directory laid out as <hub_id>/<config>/<split>.<ext>, or one --lang"
        )


def languages_table(benchmark: str | None = None) -> str:
    from xit_dist.tasks.languages import all_languages, benchmark_languages

    chosen = set(benchmark_languages(benchmark)) if benchmark else None
    lines = [f"{'code':<6}{'name':<16}{'family':<15}{'script':<12}{'CC-100 GiB':>11}  group"]
    for lang in all_languages():
        if chosen is None or lang.code in chosen:
            lines.append(f"{lang.code:<6}{lang.name:<16}{lang.family:<15}{lang.script:<12}{lang.cc100_gib:>11.1f}  {lang.resource_group}")
    return "\n".join(lines)
