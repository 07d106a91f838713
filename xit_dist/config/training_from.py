"""How an experiment spec takes the best configuration a search found: ``training_from``.

An intermediate stage with ``training_from: tune:<name>`` (or a path to a ``best.yaml``) trains
with the values of the search's best trial, and whatever the stage sets under ``training``
overrides them. ``xit_dist.tune`` writes that file (``tune/best.py``); this module only reads it,
as plain YAML, so that validating a spec needs nothing of the search machinery.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from xit_dist.tracking.object_files import fetch_kept_file, shared_location
from xit_dist.config import layout
from xit_dist.config.yaml_files import read_spec_text
from xit_dist.errors import SpecError

TUNE_PREFIX = "tune:"


def best_file(reference: str, output_dir: str | Path) -> Path:
    """``tune:<name>`` -> the search's best.yaml under output_dir; anything else is a path."""
    if reference.startswith(TUNE_PREFIX):
        name = reference[len(TUNE_PREFIX):]
        return layout.best_file(layout.search_dir(output_dir, name))
    return Path(reference).expanduser()


def read_best(reference: str, output_dir: str | Path) -> dict[str, Any]:
    path = best_file(reference, output_dir)
    try:
        found = fetch_kept_file(path)  # a search in a bucket: its best.yaml from there
    except OSError as err:
        raise SpecError(f"{reference}: cannot read {shared_location(path)}: {str(err).splitlines()[0]}") from None
    if not found:
        hint = " (run `xit-dist tune` on that search first)" if reference.startswith(TUNE_PREFIX) else ""
        raise SpecError(f"{reference}: no best configuration at {shared_location(path)}{hint}")
    try:
        document = yaml.safe_load(read_spec_text(path, f"{reference}: {path}"))
    except yaml.YAMLError:
        raise SpecError(f"{reference}: {path} is not valid YAML") from None
    if not isinstance(document, dict) or not isinstance(document.get("training"), dict) or "intermediate" not in document:
        raise SpecError(f"{reference}: {path} is not a best configuration written by xit-dist tune")
    return document


def resolve_training_from(tree: dict[str, Any], default_output_dir: str) -> dict[str, Any]:
    """A spec tree with each intermediate stage's ``training_from`` folded into its ``training``
    (the stage's own values win). Returns a new tree; the input is not changed."""
    stages = tree.get("intermediate")
    if not isinstance(stages, list) or not any(isinstance(s, dict) and s.get("training_from") for s in stages):
        return tree
    output_dir = tree.get("output_dir") or default_output_dir
    resolved = []
    for index, stage in enumerate(stages):
        if isinstance(stage, dict) and stage.get("training_from"):
            reference = stage["training_from"]
            where = f"intermediate.{index}.training_from"
            try:
                best = read_best(str(reference), output_dir)
            except SpecError as err:
                raise SpecError(f"{where}: {err}") from None
            if best["intermediate"] != stage.get("task"):
                raise SpecError(f"{where}: {reference} was searched for task {best['intermediate']}, this stage trains {stage.get('task')}")
            stage = {**stage, "training": {**best["training"], **(stage.get("training") or {})}}
        resolved.append(stage)
    return {**tree, "intermediate": resolved}


def describe_training_from(reference: str, output_dir: str | Path, training: dict[str, Any]) -> list[str]:
    """Plan lines: which values a stage took from a search, and which it sets itself."""
    best = read_best(reference, output_dir)
    taken = {k: v for k, v in best["training"].items() if training.get(k) == v}
    overridden = {k: (training.get(k), v) for k, v in best["training"].items() if training.get(k) != v}
    searched = ", ".join(f"{k}={taken[k]}" for k in best.get("searched", {}) if k in taken) or "none"
    lines = [
        f"  training from {reference} ({shared_location(best_file(reference, output_dir))}): trial {best.get('trial')}, "
        f"{best.get('metric')} {best.get('value')}",
        f"    searched values taken: {searched}; {len(taken) - sum(k in taken for k in best.get('searched', {}))} other fields as the trial had them",
    ]
    if overridden:
        lines.append("    set here instead: " + ", ".join(f"{k}={mine} (search: {theirs})" for k, (mine, theirs) in overridden.items()))
    return lines
