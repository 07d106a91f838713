"""A stage's training data: which sources it reads, then subsampling, then augmentation.

Order (each step sees the previous one's output): (1) sources: the task's English training
data, plus, per extra language of a multilingual stage (Study 1), either a translated copy of
the task's sources in the hub layout (``language_files``) or the task's translate-train source
(PAWS-X's machine-translated train splits, MNLI's XNLI translations); (2) ``subsample`` keeps
exactly N of all these rows (Study 2); (3) ``augment`` edits or adds rows (Study 3). Then each
source is featurised as before. A stage without options reads exactly what it always did.

Driver side, ``stage_data`` turns a spec stage into the ``StageData`` a worker gets (paths
resolved); worker side, ``training_rows`` builds the rows.
"""

from __future__ import annotations

from pathlib import Path

from xit_dist.data.stage_data import LanguageData, StageData
from xit_dist.tasks.languages import SOURCE_LANGUAGE


def task_names(stage) -> list[str]:
    """The registered tasks a spec stage trains (a mixture's ``tasks``, else its ``task``)."""
    return list(stage.tasks) if getattr(stage, "tasks", None) else [stage.task]


def check_stage_options(stage) -> None:
    """The spec's checks of a stage's study options; ValueError naming the field."""
    _check_mixture(stage)
    _check_languages(stage)
    for name in task_names(stage):
        _check_task_options(stage, name)


def _check_mixture(stage) -> None:
    """A mixture's tasks and sampling: set together, each task once."""
    if stage.tasks is None and "+" in stage.task:
        raise ValueError(f"task: {stage.task!r} names a mixture; list its tasks under tasks: instead")
    if stage.tasks is not None:
        if stage.task != "+".join(stage.tasks):
            raise ValueError(f"task: {stage.task!r} does not match tasks {stage.tasks}; leave task out for a mixture")
        if len(set(stage.tasks)) != len(stage.tasks):
            raise ValueError(f"tasks: {stage.tasks} lists a task twice")
    mixture = stage.tasks is not None or stage.mlm is not None
    if mixture and stage.training.eval_every_n_steps:
        raise ValueError("training.eval_every_n_steps: English-dev validation is not available in a mixture stage (tasks or mlm)")
    if not mixture and (stage.sampling != "proportional" or stage.examples_cap is not None):
        raise ValueError("sampling: only a mixture stage (tasks, or mlm) samples tasks")


def _check_languages(stage) -> None:
    """Training languages: each once, and a translated-data directory only for a listed one."""
    languages = stage.languages or []
    if len(set(languages)) != len(languages):
        raise ValueError(f"languages: {languages} lists a language twice")
    extra = sorted(set(stage.language_files) - set(languages))
    if extra:
        raise ValueError(f"language_files: {extra} not in languages {languages}")
    for lang, directory in stage.language_files.items():
        if not Path(directory).expanduser().is_dir():
            raise ValueError(f"language_files.{lang}: directory not found: {directory}")


def _check_task_options(stage, name: str) -> None:
    """What the stage asks of one of its tasks: augmentations it has columns for, and data in
    every training language."""
    from xit_dist.data.augment import check_kinds
    from xit_dist.tasks.registry import get_task

    task = get_task(name)
    if stage.augment is not None:
        try:
            check_kinds(task, stage.augment)
        except ValueError as err:
            raise ValueError(f"augment.kinds: {err}") from None
    for lang in stage.languages or []:
        if lang != SOURCE_LANGUAGE and lang not in stage.language_files and task.translate_train is None:
            raise ValueError(
                f"languages: {name} has no translate-train data for {lang!r}; give language_files.{lang} "
                f"(a directory with {name}'s training files translated, in the hub layout)"
            )


def _directory(path: Path | str | None) -> str | None:
    return str(path) if path is not None else None


def stage_data(stage, inputs) -> StageData | None:
    """What a worker needs to build the stage's data; None for a plain single-task stage."""
    from xit_dist.data.mlm import resolved

    if not stage_has_options(stage):
        return None
    names = task_names(stage)
    languages = []
    for lang in stage.languages or []:
        if lang in stage.language_files:
            languages.append(LanguageData(language=lang, data_dir=str(Path(stage.language_files[lang]).expanduser().resolve())))
        elif lang == SOURCE_LANGUAGE:
            languages.append(LanguageData(language=lang))
        else:
            languages.append(LanguageData(language=lang, translated=True))
    return StageData(
        tasks=names,
        data_dirs={name: _directory(inputs.data_dir_for(name)) for name in names},
        sampling=stage.sampling,
        temperature=stage.temperature,
        examples_cap=stage.examples_cap,
        subsample=stage.subsample,
        augment=stage.augment,
        languages=languages,
        mlm=resolved(stage.mlm) if stage.mlm is not None else None,
    )


def stage_has_options(stage) -> bool:
    return bool(stage.data_options()) if hasattr(stage, "data_options") else False


def language_sources(task, language: LanguageData, task_dir: str | None) -> list[tuple[object, str | None]]:
    """(source, directory) pairs one training language reads."""
    if language.translated:
        if task.translate_train is None:
            raise ValueError(f"task {task.name!r} has no translate-train data for {language.language!r}")
        return [(task.translate_train(language.language), task_dir)]
    directory = language.data_dir if language.data_dir is not None else task_dir
    return [(source, directory) for source in task.train_sources]


def training_sources(task, task_dir: str | None, stage: StageData | None) -> list[tuple[object, str | None]]:
    """Every (source, directory) a task reads in a stage, in a fixed order (languages as given)."""
    if stage is None or not stage.languages:
        return [(source, task_dir) for source in task.train_sources]
    return [pair for language in stage.languages for pair in language_sources(task, language, task_dir)]


def stage_sources(stage, inputs) -> list[tuple[object, Path | None]]:
    """For preflight: every (source, directory) a spec stage (intermediate or target) reads."""
    from xit_dist.tasks.registry import get_task

    data = stage_data(stage, inputs)
    pairs = []
    for name in task_names(stage):
        task_dir = _directory(inputs.data_dir_for(name))
        for source, directory in training_sources(get_task(name), task_dir, data):
            pairs.append((source, Path(directory) if directory else None))
    return pairs


def check_subsample_fits(stage, inputs, revision=None) -> None:
    """Preflight: a ``subsample.size`` above the stage's usable rows is a DataError here, on the
    driver, not later inside the workers (the rows are already loaded for preflight)."""
    from xit_dist.tasks.registry import get_task

    data = stage_data(stage, inputs)
    if data is None or data.subsample is None:
        return
    without_augment = data.model_copy(update={"augment": None})
    for name in task_names(stage):
        training_rows(get_task(name), data.data_dirs[name], revision, stage.training.max_train_examples, without_augment)


def training_rows(task, data_dir, revision=None, limit=None, stage: StageData | None = None, records: list | None = None) -> list[tuple[object, object]]:
    """(source, rows) of every training source of ``task`` in the stage, after subsampling and
    augmentation. ``limit`` (``max_train_examples``) caps each source's rows first. ``records``:
    a list that receives each source's dataset record as read (``data.dataset_records``)."""
    from xit_dist.data.loading import load_rows

    task_dir = _directory(data_dir)
    located = list(training_sources(task, task_dir, stage))
    pairs = [(source, load_rows(source, directory, revision, limit)) for source, directory in located]
    if stage is not None and stage.subsample is not None:
        from xit_dist.data.subsample import subsample_sources

        kept = subsample_sources(task, [s for s, _ in pairs], [r for _, r in pairs], stage.subsample)
        pairs = [(source, rows) for (source, _), rows in zip(pairs, kept)]
    if stage is not None and stage.augment is not None:
        from xit_dist.data.augment import augment_rows

        pairs = [(source, augment_rows(rows, source, stage.augment)) for source, rows in pairs]
    if records is not None:
        from xit_dist.data.dataset_records import TRAINING, dataset_record

        records += [dataset_record(task.name, source, rows, directory, revision, TRAINING) for (source, rows), (_, directory) in zip(pairs, located)]
    return pairs
