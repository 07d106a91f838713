"""Rows -> model inputs for one task split, through the task's format (cached by `datasets`)."""

from __future__ import annotations

from xit_dist.data.loading import load_rows
from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.formats import get_format
from xit_dist.tasks.formats.options import FormatOptions


def evaluation_inputs(task: Task, source: DataSource, tokenizer, options: FormatOptions, data_dir, revision=None, limit=None, perturbation=None):
    """(rows, features) of one evaluation split: the format scores from both. ``perturbation``
    (``data.perturb.PerturbationOptions``): evaluate a perturbed copy of the rows instead."""
    rows = load_rows(source, data_dir, revision, limit)
    if perturbation is not None:
        from xit_dist.data.perturb import perturb_rows

        rows = perturb_rows(rows, source, perturbation)
    return rows, get_format(task.format).featurize(task, rows, source, tokenizer, options, for_eval=True)


def training_features(task: Task, tokenizer, options: FormatOptions, data_dir, revision=None, limit=None, stage=None, records=None):
    """The task's training features: each training source featurised on its own (their schemas
    differ: ANLI, SNLI and MNLI under one head), then concatenated; ``limit`` caps the rows.
    ``stage`` (``StageData``): an intermediate stage's languages, subsample and augmentation
    (``data.stage.training_rows``); ``records``: a list that receives what was read, per source."""
    from datasets import concatenate_datasets

    from xit_dist.data.stage import training_rows

    fmt = get_format(task.format)
    parts = [
        fmt.featurize(task, rows, source, tokenizer, options, for_eval=False)
        for source, rows in training_rows(task, data_dir, revision, limit, stage, records)
    ]
    features = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    if limit is not None and limit < len(features):
        features = features.select(range(limit))
    return features
