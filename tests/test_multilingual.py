"""Study 1's data: a stage in several languages (translate-train sets a task defines, or local
translations in the hub layout) and masked-language-modelling text. No Ray."""

from __future__ import annotations

import copy
import json

import pytest

from tests.conftest import small_spec_tree
from xit_dist.builtin.assets import resolve_data_dir, resolve_model_dir
from xit_dist.data.mlm import MlmOptions, corpus_rows, mlm_collator, mlm_features, resolved
from xit_dist.data.stage import stage_data, stage_sources, training_rows
from xit_dist.errors import DataError, SpecError
from xit_dist.plan.phases import build_plan
from xit_dist.plan.preflight import ResolvedInputs
from xit_dist.config.load import validate_tree
from xit_dist.tasks.registry import get_task


@pytest.fixture(scope="module")
def demo():
    return resolve_data_dir("builtin:demo")


def inputs_for(data_dir) -> ResolvedInputs:
    return ResolvedInputs(model_dir="unused", data_dir=data_dir, eval_languages=["en"], hidden_size=32)


def write_translated_mnli(root, language: str, n: int):
    folder = root / language / "nyu-mll" / "glue" / "mnli"
    folder.mkdir(parents=True)
    with open(folder / "train.jsonl", "w", encoding="utf-8") as handle:
        for i in range(n):
            handle.write(json.dumps({"premise": f"{language} Prämisse {i}", "hypothesis": f"{language} Hypothese {i}", "label": i % 3, "idx": i}) + "\n")
    return root / language


def test_translate_train_and_local_translations_join_the_english_rows(tmp_path, demo):
    tree = small_spec_tree(tmp_path)
    german = write_translated_mnli(tmp_path, "de", 12)
    tree["intermediate"] = [{"task": "pawsx", "languages": ["en", "de", "fr"]}, {"task": "mnli", "languages": ["en", "de"], "language_files": {"de": str(german)}}]
    spec = validate_tree(tree)
    inputs = inputs_for(demo)

    pawsx = stage_data(spec.intermediate[0], inputs)
    assert [(lang.language, lang.translated) for lang in pawsx.languages] == [("en", False), ("de", True), ("fr", True)]
    pairs = training_rows(get_task("pawsx"), demo, stage=pawsx)
    assert [source.config for source, _ in pairs] == ["PAWS-X.en", "PAWS-X.de", "PAWS-X.fr"]
    assert [len(rows) for _, rows in pairs] == [2000, 300, 300]  # the demo's English and translated train splits

    mnli = stage_data(spec.intermediate[1], inputs)
    pairs = training_rows(get_task("mnli"), demo, stage=mnli)
    assert [len(rows) for _, rows in pairs] == [3000, 12]
    assert pairs[1][1][0]["premise"] == "de Prämisse 0"
    # preflight reads exactly these sources
    assert [(s.config, d) for s, d in stage_sources(spec.intermediate[1], inputs)] == [("mnli", demo), ("mnli", german.resolve())]


def test_subsample_and_augment_apply_to_the_multilingual_union(tmp_path, demo):
    tree = small_spec_tree(tmp_path)
    tree["intermediate"] = [{"task": "pawsx", "languages": ["en", "de"], "subsample": {"size": 460}, "augment": {"rate": 0.5, "kinds": ["negation"]}}]
    data = stage_data(validate_tree(tree).intermediate[0], inputs_for(demo))
    pairs = training_rows(get_task("pawsx"), demo, stage=data)
    assert [len(rows) for _, rows in pairs] == [400, 60]  # 460 x (2000, 300) / 2300
    augmented = sum(text.endswith("and false is not true.") for _, rows in pairs for text in rows["sentence2"])
    assert 180 < augmented < 280


def test_languages_are_part_of_the_hash_and_checked(tmp_path):
    tree = small_spec_tree(tmp_path)
    plain = build_plan(validate_tree(tree))[0].hash
    multilingual = copy.deepcopy(tree)
    multilingual["intermediate"][0]["languages"] = ["en", "de"]
    assert build_plan(validate_tree(multilingual))[0].hash != plain
    bad = copy.deepcopy(tree)
    bad["intermediate"][0] = {"task": "qqp", "languages": ["en", "de"]}
    with pytest.raises(SpecError, match=r"intermediate\.0: languages: qqp has no translate-train data for 'de'; give language_files\.de"):
        validate_tree(bad)
    bad["intermediate"][0]["language_files"] = {"de": str(tmp_path / "missing")}
    with pytest.raises(SpecError, match=r"language_files\.de: directory not found"):
        validate_tree(bad)


# ---------------------------------------------------------------------------------- MLM text


def test_mlm_text_from_files_and_the_demo_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\n  \nsecond line\n", encoding="utf-8")
    (tmp_path / "b.txt").write_text("third line\n", encoding="utf-8")
    rows = corpus_rows(MlmOptions(files=[str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]))
    assert rows["text"] == ["first line", "second line", "third line"]  # empty lines dropped
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps({"text": t, "lang": "de"}) for t in ["eins", "zwei"]), encoding="utf-8")
    assert corpus_rows(MlmOptions(files=[str(tmp_path / "c.jsonl")], max_lines=1))["text"] == ["eins"]
    with pytest.raises(DataError, match="mix of formats"):
        corpus_rows(MlmOptions(files=[str(tmp_path / "a.txt"), str(tmp_path / "c.jsonl")]))
    demo = resolved(MlmOptions(corpus="builtin:demo"))
    assert demo.corpus is None and demo.files[0].endswith("corpus.txt")
    assert len(corpus_rows(demo)) > 1000


def test_mlm_options_are_checked():
    with pytest.raises(ValueError, match="exactly one of files, corpus, hub"):
        MlmOptions()
    with pytest.raises(ValueError, match="exactly one of files, corpus, hub"):
        MlmOptions(corpus="builtin:demo", hub={"id": "x"})
    with pytest.raises(ValueError, match="unknown 'wiki'"):
        MlmOptions(corpus="wiki")


def test_mlm_features_and_masking(tmp_path):
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir("builtin:xlmr-tiny"))
    (tmp_path / "t.txt").write_text("\n".join(["teacher buys 3 old apples in station today."] * 40), encoding="utf-8")
    options = MlmOptions(files=[str(tmp_path / "t.txt")], probability=0.3)
    features = mlm_features(options, tokenizer, max_seq_length=16)
    assert features.column_names == ["input_ids", "attention_mask", "special_tokens_mask"]
    assert max(len(ids) for ids in features["input_ids"]) <= 16
    torch.manual_seed(0)
    batch = mlm_collator(tokenizer, options.probability)([features[i] for i in range(40)])
    masked = batch["labels"] != -100
    assert 0.15 < masked.float().mean().item() / batch["attention_mask"].float().mean().item() < 0.45
    special = torch.tensor([row["special_tokens_mask"] + [1] * (batch["labels"].shape[1] - len(row["special_tokens_mask"])) for row in (features[i] for i in range(40))])
    assert not (masked & special.bool()).any()  # <s> and </s> are never masked
