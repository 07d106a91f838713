"""Everything that can be checked before Ray starts: the model and tokenizer load, every data
split a phase or the evaluation will read exists and has the hub's schema. Mistakes surface
here as one line (``XitError``), not minutes later inside a worker; training rows the format
will drop (a label of -1, ...) are said here, one line per split. Loading the data here also
fills `datasets`' cache, so the workers read it instead of downloading it again."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xit_dist.builtin.assets import resolve_data_dir, resolve_model_dir
from xit_dist.data.drops import stage_drop_lines
from xit_dist.data.loading import load_source
from xit_dist.data.stage import check_subsample_fits, stage_sources
from xit_dist.errors import ModelError, SpecError, XitError
from xit_dist.console import say
from xit_dist.config.spec import ExperimentSpec
from xit_dist.tasks.registry import get_task


@dataclass(frozen=True)
class ResolvedInputs:
    model_dir: str            # hub id or local directory
    data_dir: Path | None     # None: the hub
    eval_languages: list[str]
    hidden_size: int
    task_dirs: dict[str, Path] = field(default_factory=dict)  # data.task_files, resolved

    def data_dir_for(self, task: str) -> Path | None:
        return self.task_dirs.get(task, self.data_dir)


def check_model(model_dir: str, revision: str | None) -> int:
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(model_dir, revision=revision)
        AutoTokenizer.from_pretrained(model_dir, revision=revision)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"model.name_or_path {model_dir}: cannot load config/tokenizer: {first}") from None
    return config.hidden_size


def check_format_options(spec: ExperimentSpec, model_dir: str) -> None:
    """Settings a task's format cannot work with (QA windows that leave no room for context)."""
    from transformers import AutoTokenizer

    from xit_dist.tasks.formats import get_format
    from xit_dist.tasks.formats.options import FormatOptions

    tokenizer = AutoTokenizer.from_pretrained(model_dir, revision=spec.model.revision)
    stages = [(f"intermediate.{i}", stage) for i, stage in enumerate(spec.intermediate)] + [("target", spec.target)]
    for where, stage in stages:
        options = FormatOptions(
            max_seq_length=stage.training.max_seq_length,
            doc_stride=stage.training.doc_stride,
            max_query_length=stage.training.max_query_length,
        )
        for name in stage.task.split("+"):
            try:
                get_format(get_task(name).format).check_options(options, tokenizer)
            except XitError as err:
                raise SpecError(f"{where}: {err}") from None


def preflight(spec: ExperimentSpec) -> ResolvedInputs:
    model_dir = resolve_model_dir(spec.model.name_or_path)
    hidden_size = check_model(model_dir, spec.model.revision)
    check_format_options(spec, model_dir)
    inputs = ResolvedInputs(
        model_dir,
        resolve_data_dir(spec.data.local_dir),
        spec.evaluation.languages or list(get_task(spec.target.task).languages),
        hidden_size,
        {task: Path(directory).expanduser().resolve() for task, directory in spec.data.task_files.items()},
    )
    for stage in [*spec.intermediate, spec.target]:
        for source, directory in stage_sources(stage, inputs):  # languages and mixtures included
            load_source(source, directory, spec.data.revision)
    for stage in spec.intermediate:
        check_subsample_fits(stage, inputs, spec.data.revision)
    for stage in [*spec.intermediate, spec.target]:
        for line in stage_drop_lines(stage, inputs, spec.data.revision):  # also in each phase's record
            say(line)
    target = get_task(spec.target.task)
    for lang in inputs.eval_languages:
        load_source(target.eval_source(spec.evaluation.split, lang), inputs.data_dir_for(target.name), spec.data.revision)
    return inputs
