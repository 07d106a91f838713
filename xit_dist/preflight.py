"""Everything that can be checked before Ray starts: the model and tokenizer load, every data
split a phase or the evaluation will read exists and has the hub's schema. Mistakes surface
here as one line (``XitError``), not minutes later inside a worker. Loading the data here also
fills `datasets`' cache, so the workers read it instead of downloading it again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xit_dist.assets import resolve_data_dir, resolve_model_dir
from xit_dist.data.loading import load_source
from xit_dist.errors import ModelError
from xit_dist.spec import ExperimentSpec
from xit_dist.tasks import get_task


@dataclass(frozen=True)
class ResolvedInputs:
    model_dir: str            # hub id or local directory
    data_dir: Path | None     # None: the hub
    eval_languages: list[str]
    hidden_size: int


def check_model(model_dir: str, revision: str | None) -> int:
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(model_dir, revision=revision)
        AutoTokenizer.from_pretrained(model_dir, revision=revision)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"model.name_or_path {model_dir}: cannot load config/tokenizer: {first}") from None
    return config.hidden_size


def preflight(spec: ExperimentSpec) -> ResolvedInputs:
    model_dir = resolve_model_dir(spec.model.name_or_path)
    hidden_size = check_model(model_dir, spec.model.revision)
    data_dir = resolve_data_dir(spec.data.local_dir)
    for stage in [*spec.intermediate, spec.target]:
        load_source(get_task(stage.task).train, data_dir, spec.data.revision)
    target = get_task(spec.target.task)
    languages = spec.evaluation.languages or list(target.languages)
    for lang in languages:
        load_source(target.eval_source(spec.evaluation.split, lang), data_dir, spec.data.revision)
    return ResolvedInputs(model_dir, data_dir, languages, hidden_size)
