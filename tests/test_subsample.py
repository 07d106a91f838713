"""Study 2: exact, seeded, stratified subsampling of a stage's training rows, and its place in
the spec and the phase hash. No Ray: rows in the hub schema, hand-computed class counts."""

from __future__ import annotations

import copy
import json
from collections import Counter

import numpy as np
import pytest

from tests.conftest import small_spec_tree
from xit_dist.builtin.assets import resolve_data_dir, resolve_model_dir
from xit_dist.data.loading import load_source
from xit_dist.data.stage import training_rows
from xit_dist.data.subsample import SubsampleOptions, stratified_choice, subsample_sources
from xit_dist.errors import DataError, SpecError
from xit_dist.plan.phases import build_plan
from xit_dist.config.load import validate_tree
from xit_dist.tasks.registry import get_task
from xit_dist.data.stage_data import StageData


def write_mnli(root, labels: list[int]) -> None:
    """MNLI train rows (GLUE schema) with the given labels; -1 is GLUE's "no gold label"."""
    folder = root / "nyu-mll" / "glue" / "mnli"
    folder.mkdir(parents=True)
    with open(folder / "train.jsonl", "w") as handle:
        for i, label in enumerate(labels):
            row = {"premise": f"premise number {i}", "hypothesis": f"hypothesis {i}", "label": label, "idx": i}
            handle.write(json.dumps(row) + "\n")


@pytest.fixture
def mnli_30_20_10(tmp_path):
    """60 rows: 30 entailment, 20 neutral, 10 contradiction, interleaved, plus 5 without gold."""
    labels = [0] * 30 + [1] * 20 + [2] * 10 + [-1] * 5
    order = np.random.default_rng(7).permutation(len(labels))
    write_mnli(tmp_path, [labels[i] for i in order])
    return tmp_path


def subsample(directory, options: SubsampleOptions):
    task = get_task("mnli")
    rows = [load_source(source, directory) for source in task.train_sources]
    return subsample_sources(task, list(task.train_sources), rows, options)[0]


@pytest.mark.parametrize(
    "size, expected",
    [
        (12, {0: 6, 1: 4, 2: 2}),  # 12 x (30, 20, 10) / 60: exact shares
        (10, {0: 5, 1: 3, 2: 2}),  # 5, 3.33, 1.67: floors 5, 3, 1; the one left goes to the largest remainder (2/3)
        (60, {0: 30, 1: 20, 2: 10}),  # every usable row
    ],
)
def test_stratified_counts_are_the_label_shares(mnli_30_20_10, size, expected):
    kept = subsample(mnli_30_20_10, SubsampleOptions(size=size, seed=3))
    assert len(kept) == size
    assert Counter(kept["label"]) == expected  # never a row without gold label (-1)


def test_same_seed_same_rows_other_seed_other_rows(mnli_30_20_10):
    first = subsample(mnli_30_20_10, SubsampleOptions(size=12, seed=3))["idx"]
    again = subsample(mnli_30_20_10, SubsampleOptions(size=12, seed=3))["idx"]
    other = subsample(mnli_30_20_10, SubsampleOptions(size=12, seed=4))["idx"]
    assert first == again
    assert first != other
    assert first == sorted(first)  # rows keep their file order


def test_unstratified_is_a_seeded_random_subset(mnli_30_20_10):
    kept = subsample(mnli_30_20_10, SubsampleOptions(size=12, seed=3, stratify=False))
    assert len(kept) == 12 and -1 not in kept["label"]
    assert len(set(kept["idx"])) == 12


def test_more_rows_than_the_task_has_is_a_one_line_error(mnli_30_20_10):
    with pytest.raises(DataError, match="subsample.size 61 exceeds the task's 60 usable training rows"):
        subsample(mnli_30_20_10, SubsampleOptions(size=61))


def test_stratified_choice_by_hand():
    rng = np.random.default_rng(0)
    labels = ["a"] * 6 + ["b"] * 3 + ["c"] * 3  # shares of 4: 2, 1, 1
    picked = stratified_choice(len(labels), labels, 4, rng)
    assert Counter(labels[i] for i in picked) == {"a": 2, "b": 1, "c": 1}
    assert list(picked) == sorted(picked)


def test_multi_source_task_splits_n_by_source_size_and_stratifies_within_each():
    """ANLI+ (demo): N is shared among its sources in proportion to their usable rows; SNLI's
    rows without gold label are never picked."""
    demo = resolve_data_dir("builtin:demo")
    task = get_task("anli_plus")
    options = SubsampleOptions(size=100, seed=0)
    stage = StageData(tasks=["anli_plus"], data_dirs={"anli_plus": str(demo)}, subsample=options)
    pairs = training_rows(task, demo, stage=stage)
    usable = []
    for source, _ in pairs:
        labels = load_source(source, demo)["label"]
        usable.append(sum(1 for label in labels if label != -1))
    kept = [len(rows) for _, rows in pairs]
    assert sum(kept) == 100
    for count, available in zip(kept, usable):
        assert abs(count - 100 * available / sum(usable)) < 1  # largest-remainder shares
    for (source, rows) in pairs:
        assert -1 not in rows["label"]


def test_training_features_of_a_subsampled_stage_hold_exactly_n_examples():
    from transformers import AutoTokenizer

    from xit_dist.data.features import training_features
    from xit_dist.tasks.formats.options import FormatOptions

    demo = resolve_data_dir("builtin:demo")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir("builtin:xlmr-tiny"))
    stage = StageData(tasks=["mnli"], data_dirs={"mnli": str(demo)}, subsample=SubsampleOptions(size=300, seed=1))
    features = training_features(get_task("mnli"), tokenizer, FormatOptions(max_seq_length=64), demo, stage=stage)
    assert len(features) == 300
    assert Counter(features["labels"]) == {0: 100, 1: 100, 2: 100}  # the demo's MNLI is balanced


def test_subsample_is_part_of_the_phase_hash(tmp_path):
    tree = small_spec_tree(tmp_path)
    plain = build_plan(validate_tree(tree))
    sized = copy.deepcopy(tree)
    sized["intermediate"][0]["subsample"] = {"size": 1000, "seed": 0}
    other_size = copy.deepcopy(sized)
    other_size["intermediate"][0]["subsample"]["size"] = 2000
    other_seed = copy.deepcopy(sized)
    other_seed["intermediate"][0]["subsample"]["seed"] = 1
    hashes = [build_plan(validate_tree(t))[0].hash for t in (tree, sized, other_size, other_seed)]
    assert len(set(hashes)) == 4
    assert build_plan(validate_tree(copy.deepcopy(sized)))[0].hash == hashes[1]  # stable
    # the target phase downstream of a different intermediate phase differs too
    assert build_plan(validate_tree(sized))[1].hash != plain[1].hash


def test_bad_subsample_options_are_one_line_errors(tmp_path):
    tree = small_spec_tree(tmp_path)
    tree["intermediate"][0]["subsample"] = {"size": 0}
    with pytest.raises(SpecError, match=r"intermediate\.0\.subsample\.size: Input should be greater than 0"):
        validate_tree(tree)
    tree["intermediate"][0]["subsample"] = {"size": 10, "sede": 1}
    with pytest.raises(SpecError, match=r"intermediate\.0\.subsample\.sede: unknown key"):
        validate_tree(tree)
    tree = small_spec_tree(tmp_path)
    tree["target"]["subsample"] = {"size": 10}
    with pytest.raises(SpecError, match="only intermediate stages take subsample"):
        validate_tree(tree)


def test_a_subsample_larger_than_the_task_fails_in_preflight_before_ray(tmp_path):
    from xit_dist.plan.preflight import preflight

    tree = small_spec_tree(tmp_path)
    tree["intermediate"][0]["subsample"] = {"size": 100000}
    with pytest.raises(DataError, match="mnli: subsample.size 100000 exceeds the task's 3000 usable training rows"):
        preflight(validate_tree(tree))
