"""The retrieval format (Tatoeba, BUCC, LAReQA, Mewsli-X): pooling, layer choice, margin
mining, scoring on hand-made cases, the release-file readers on fixtures, and evaluations
straight from an encoder (no training phase) in real Ray runs through ``run_experiment``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import small_spec_tree
from xit_dist.tasks.registry import get_task
from xit_dist.data.loading import load_source
from xit_dist.errors import DataError, SpecError
from xit_dist.tasks.formats import get_format
from xit_dist.tasks.formats.retrieval import hidden_layer, margin_candidates, pool
from xit_dist.tasks.formats.options import FormatOptions

RETRIEVAL = get_format("retrieval")


# ---------------------------------------------------------------------------------- embedding


def test_mean_pooling_ignores_padding_and_cls_takes_the_first_token():
    hidden = torch.tensor(
        [[[1.0, 2.0], [3.0, 4.0], [1e6, 1e6], [1e6, 1e6]],  # two real tokens, two padding
         [[0.0, 0.0], [2.0, 2.0], [4.0, 4.0], [6.0, 6.0]]]
    )
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert pool(hidden, mask, "mean").tolist() == [[2.0, 3.0], [3.0, 3.0]]
    assert pool(hidden, mask, "cls").tolist() == [[1.0, 2.0], [0.0, 0.0]]


def test_layer_is_xtremes_14_of_24_scaled_to_depth_unless_given():
    default = FormatOptions()
    assert [hidden_layer(n, default) for n in (24, 12, 6, 2)] == [14, 7, 4, 1]
    assert hidden_layer(2, FormatOptions(retrieval_layer=0)) == 0  # the embedding layer
    assert hidden_layer(2, FormatOptions(retrieval_layer=2)) == 2
    with pytest.raises(SpecError, match="evaluation.retrieval_layer: 3 is beyond the model's 2 layers"):
        hidden_layer(2, FormatOptions(retrieval_layer=3))


# ---------------------------------------------------------------------------------- scoring


def test_ratio_margin_prefers_a_mutual_match_over_a_hub():
    """Hand-computed with k = 2: y1 is close to both sources (a hub). Plain cosine pairs x1 with
    the hub (0.6 > 0.5); the ratio margin discounts it: x1-y1 0.6 / ((0.55 + 0.6) / 2) = 1.0435
    < x1-y2 0.5 / ((0.55 + 0.25) / 2) = 1.25. x0-y0 scores 0.8 / ((0.7 + 0.4) / 2) = 1.4545."""
    x = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = np.array([[0.8, 0.0, 0.6], [0.6, 0.6, math.sqrt(0.28)], [0.0, 0.5, math.sqrt(0.75)]])
    assert (x @ y.T)[1].argmax() == 1  # nearest neighbour: the hub
    found = margin_candidates(x, y, k=2)
    assert [(i, j) for i, j, _ in found] == [(0, 0), (1, 2)]  # each sentence used once, best first
    assert [s for _, _, s in found] == pytest.approx([0.8 / 0.55, 0.5 / 0.4])


def _features(items: list[tuple[str, str, str, list[str]]]):
    """Feature rows as featurize makes them: (id, side, part, relevant); text = id."""
    from datasets import Dataset

    return Dataset.from_dict({
        "id": [i for i, *_ in items], "text": [i for i, *_ in items], "side": [s for _, s, *_ in items],
        "part": [p for _, _, p, _ in items], "relevant": [r for *_, r in items],
    })


def test_tatoeba_scores_english_queries_against_the_language():
    """en -> xx (XTREME's similarity_search indexes xx and searches it with English): t1's nearest
    source sentence is s0, so 2 of 3 are right; the other direction would score 3 of 3."""
    features = _features([(str(i), side, "", [str(i)] if side == "source" else []) for i in range(3) for side in ("source", "target")])
    s = [np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])]
    t = [np.array([1.0, 0, 0]), np.array([0.9, 0.436, 0]), np.array([0, 0, 1.0])]
    predictions = [s[0], t[0], s[1], t[1], s[2], t[2]]
    scores = RETRIEVAL.score(get_task("tatoeba"), None, features, predictions, "de", FormatOptions())
    assert scores == {"accuracy": pytest.approx(200 / 3)}
    assert RETRIEVAL.num_examples(None, features) == 3


def test_ranking_is_map_at_20_over_the_candidates():
    """Cosines: q0 ranks c0 (0.995), c2 (0.640), c1 (0.6); q1 ranks c1 (0.8), c2 (0.768), c0.
    Both find their relevant candidates first: mAP 100. With c2 = (0.5, 0.9), q0 ranks c0, c1,
    c2 (AP (1/1 + 2/3) / 2) and q1 ranks c2 (0.874) before c1 (AP 1/2)."""
    features = _features([
        ("q0", "source", "test", ["c0", "c2"]), ("q1", "source", "test", ["c1"]),
        ("c0", "target", "test", []), ("c1", "target", "test", []), ("c2", "target", "test", []),
    ])
    q0, q1, c0, c1 = np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([1.0, 0.1]), np.array([0.6, 0.8])
    lareqa = get_task("lareqa")
    assert RETRIEVAL.score(lareqa, None, features, [q0, q1, c0, c1, np.array([0.5, 0.6])], "en", FormatOptions()) == {"map_at_20": 100.0}
    scores = RETRIEVAL.score(lareqa, None, features, [q0, q1, c0, c1, np.array([0.5, 0.9])], "en", FormatOptions())
    assert scores["map_at_20"] == pytest.approx(100 * ((1 + 2 / 3) / 2 + 1 / 2) / 2)
    assert RETRIEVAL.num_examples(None, features) == 2


def _bucc_items(rng, part: str, prefix: str, gold: int = 4, alone: int = 2, dim: int = 16):
    """Gold pairs (noisy copies) plus unrelated sentences on both sides of one part."""
    items, vectors = [], []
    for i in range(gold + alone):
        x = rng.normal(size=dim)
        items.append((f"{prefix}x{i}", "source", part, [f"{prefix}y{i}"] if i < gold else []))
        vectors.append(x)
    for i in range(gold + alone):
        items.append((f"{prefix}y{i}", "target", part, []))
        vectors.append(vectors[i] + 0.3 * rng.normal(size=dim) if i < gold else rng.normal(size=dim))
    return items, vectors


def test_bucc_chooses_the_threshold_on_dev_and_scores_test(monkeypatch):
    import xit_dist.evaluate.metrics as metrics

    rng = np.random.default_rng(0)
    dev_items, dev_vectors = _bucc_items(rng, "dev", "d")
    test_items, test_vectors = _bucc_items(rng, "test", "t")
    calls = {}
    real_best, real_f1 = metrics.best_threshold, metrics.bucc_f1

    def best_threshold(scores, gold):
        calls["best"] = (set(scores), set(gold))
        return real_best(scores, gold)

    def bucc_f1(scores, gold, threshold):
        calls["f1"] = (set(scores), set(gold), threshold)
        return real_f1(scores, gold, threshold)

    monkeypatch.setattr(metrics, "best_threshold", best_threshold)
    monkeypatch.setattr(metrics, "bucc_f1", bucc_f1)
    features = _features(dev_items + test_items)
    scores = RETRIEVAL.score(get_task("bucc"), None, features, dev_vectors + test_vectors, "de", FormatOptions())
    dev_candidates, dev_gold = calls["best"]
    assert dev_gold == {(f"dx{i}", f"dy{i}") for i in range(4)}
    assert all(x.startswith("dx") and y.startswith("dy") for x, y in dev_candidates)
    test_candidates, test_gold, threshold = calls["f1"]
    assert test_gold == {(f"tx{i}", f"ty{i}") for i in range(4)}
    assert all(x.startswith("tx") and y.startswith("ty") for x, y in test_candidates)
    assert threshold == real_best(*_mined(dev_items, dev_vectors, "dev"))
    assert 0.0 <= scores["f1"] <= 100.0 and scores == {"f1": real_f1(*_mined(test_items, test_vectors, "test"), threshold)}
    assert RETRIEVAL.num_examples(None, features) == 4  # test gold pairs
    # The validation split (dev part only) scores dev at its own best threshold.
    assert RETRIEVAL.score(get_task("bucc"), None, _features(dev_items), dev_vectors, "de", FormatOptions())["f1"] == real_f1(
        *_mined(dev_items, dev_vectors, "dev"), threshold
    )


def _mined(items, vectors, part: str):
    """(candidate pair -> margin score, gold pairs) of one part, straight from the mining step."""
    from xit_dist.tasks.formats.retrieval import _Items, _mining_scores

    return _mining_scores(_Items(_features(items), vectors), part)


def test_bucc_drops_sentences_that_repeat_under_several_ids():
    """As XTREME's read_sent2id: a text seen under two ids maps to neither, so its pairs are no candidates."""
    from xit_dist.tasks.formats.retrieval import _Items, _mining_scores

    rng = np.random.default_rng(1)
    items, vectors = _bucc_items(rng, "dev", "d")
    scores, gold = _mining_scores(_Items(_features(items), vectors), "dev")
    assert ("dx0", "dy0") in scores
    features = _features(items + [("dy0-again", "target", "dev", [])]).map(
        lambda row: {"text": "dy0" if row["id"] == "dy0-again" else row["text"]}
    )
    scores, gold = _mining_scores(_Items(features, vectors + [vectors[items.index(("dy0", "target", "dev", []))]]), "dev")
    assert not any(y in ("dy0", "dy0-again") for _, y in scores)
    assert ("dx0", "dy0") in gold  # still gold: missing it costs recall, as in XTREME


# ---------------------------------------------------------------------------------- data


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_tatoeba_hub_rows_become_one_feature_per_sentence(tmp_path):
    from transformers import AutoTokenizer

    from xit_dist.builtin.assets import resolve_model_dir

    rows = [{"source_sentence": f"pilot buys {n} apples.\n", "target_sentence": f"pilot buys {n} apples.\n",
             "source_lang": "deu", "target_lang": "eng"} for n in range(2, 5)]
    _write(tmp_path / "google/xtreme/tatoeba.deu/validation.jsonl", [json.dumps(r) for r in rows])
    source = get_task("tatoeba").eval_source("test", "de")
    assert (source.config, source.split) == ("tatoeba.deu", "validation")  # the hub's only split
    loaded = load_source(source, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir("builtin:xlmr-tiny"))
    features = RETRIEVAL.featurize(get_task("tatoeba"), loaded, source, tokenizer, FormatOptions(max_seq_length=512), for_eval=True)
    assert features["side"] == ["source", "target"] * 3
    assert features["id"] == ["0", "0", "1", "1", "2", "2"]
    assert features["relevant"] == [["0"], [], ["1"], [], ["2"], []]
    assert features["text"][0] == "pilot buys 2 apples."  # stripped, as XTREME reads the files
    assert all(ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id for ids in features["input_ids"])
    with pytest.raises(Exception, match="no training data"):
        RETRIEVAL.featurize(get_task("tatoeba"), loaded, source, tokenizer, FormatOptions(), for_eval=False)


def _bucc_release(root: Path, lang: str = "de") -> None:
    folder = root / "bucc2018" / f"{lang}-en"
    for part, n in (("sample", 3), ("training", 4)):
        _write(folder / f"{lang}-en.{part}.{lang}", [f"{lang}-{i:09d}\t{lang} {part} satz {i}" for i in range(1, n + 1)])
        _write(folder / f"{lang}-en.{part}.en", [f"en-{i:09d}\ten {part} sentence {i}" for i in range(1, n + 1)])
        _write(folder / f"{lang}-en.{part}.gold", [f"{lang}-{i:09d}\ten-{n + 1 - i:09d}" for i in (1, 2)])


def test_bucc_reads_the_release_files_with_dev_carried_into_test(tmp_path):
    _bucc_release(tmp_path)
    task = get_task("bucc")
    test_rows = load_source(task.eval_source("test", "de"), tmp_path)
    assert len(test_rows) == 3 + 3 + 4 + 4
    parts = list(zip(test_rows["part"], test_rows["side"]))
    assert parts[:4] == [("dev", "target"), ("test", "target"), ("dev", "source"), ("test", "source")]  # dev and test interleaved
    gold = {(i, part): rel for i, part, side, rel in zip(test_rows["id"], test_rows["part"], test_rows["side"], test_rows["relevant"])
            if side == "source"}
    assert gold[("de-000000001", "dev")] == ["en-000000003"] and gold[("de-000000001", "test")] == ["en-000000004"]
    assert gold[("de-000000003", "dev")] == []  # a distractor
    # each source sentence comes right after its gold target, so a prefix keeps whole pairs
    ordered = list(zip(test_rows["id"], test_rows["part"]))
    assert ordered.index(("en-000000003", "dev")) == ordered.index(("de-000000001", "dev")) - 2
    validation_rows = load_source(task.eval_source("validation", "de"), tmp_path)
    assert set(validation_rows["part"]) == {"dev"} and len(validation_rows) == 6
    # the folder itself works too
    assert len(load_source(task.eval_source("validation", "de"), tmp_path / "bucc2018")) == 6


def test_bucc_release_problems_are_one_clear_line(tmp_path):
    task = get_task("bucc")
    with pytest.raises(DataError, match="release file not found"):
        load_source(task.eval_source("test", "de"), tmp_path)
    _bucc_release(tmp_path)
    gold = tmp_path / "bucc2018/de-en/de-en.training.gold"
    gold.write_text("de-000000001\ten-000000099\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"de-en.training.gold:1: gold pair de-000000001 en-000000099 names a sentence"):
        load_source(task.eval_source("test", "de"), tmp_path)
    with pytest.raises(DataError, match="no usable hub copy"):
        load_source(task.eval_source("test", "de"), None)


def test_mewslix_mention_markup_follows_xtreme_r(tmp_path):
    text = "Das Spiel {heute}. Gestern traf Berlin auf Paris."
    berlin = text.index("Berlin")
    article = {
        "context": {"document_title": "t", "document_url": "u", "document_id": "d", "language": "de", "text": text,
                    "sentence_spans": [{"start": 0, "end": 18}, {"start": 19, "end": len(text)}]},
        "mentions": [{"example_id": "m1", "entity_id": "Q64", "mention_span": {"start": berlin, "end": berlin + 6, "text": "Berlin"}}],
    }
    entity = {"entity_id": "Q64", "title": "Berlin", "description": "Berlin ist eine Stadt.\nSie liegt  an der Spree.",
              "sentence_spans": [{"start": 0, "end": 22}, {"start": 23, "end": 48}], "description_language": "de", "description_url": "u"}
    other = {**entity, "entity_id": "Q90", "title": "Paris", "description": "Paris ist groß.", "sentence_spans": [{"start": 0, "end": 15}]}
    _write(tmp_path / "mewslix/wikinews_mentions-test.jsonl", [json.dumps(article)])
    _write(tmp_path / "mewslix/candidate_set_entities.jsonl", [json.dumps(other), json.dumps(entity)])
    rows = load_source(get_task("mewslix").eval_source("test", "de"), tmp_path)
    assert rows["id"][0] == "Q64"  # the gold entity comes right before its mention
    assert rows["text"][0] == "Berlin ist eine Stadt. Sie liegt an der Spree."
    assert rows["text"][1] == "Berlin: Gestern traf { Berlin } auf Paris."
    assert rows["relevant"][1] == ["Q64"]
    assert load_source(get_task("mewslix").eval_source("test", "es"), tmp_path)["side"] == ["target", "target"]


def test_lareqa_pool_spans_every_language_file(tmp_path):
    def squad_r(lang: str, words: tuple[str, str]) -> dict:
        context = f"{words[0]} one. {words[1]} two."
        return {"data": [{"paragraphs": [{"context": context, "sentence_breaks": [[0, len(words[0]) + 5], [len(words[0]) + 6, len(context)]],
                                          "qas": [{"id": "q1", "question": f"{words[1]}?", "answers": [{"text": words[1], "answer_start": len(words[0]) + 6}]}]}]}]}

    folder = tmp_path / "lareqa/xquad-r"
    folder.mkdir(parents=True)
    (folder / "en.json").write_text(json.dumps(squad_r("en", ("Red", "Blue"))))
    (folder / "de.json").write_text(json.dumps(squad_r("de", ("Rot", "Blau"))))
    rows = load_source(get_task("lareqa").eval_source("test", "de"), tmp_path)
    question = rows["side"].index("source")
    assert rows["id"][question] == "q1_de" and sorted(rows["relevant"][question]) == ["de_1_1", "en_1_1"]
    candidates = {i: text for i, text, side in zip(rows["id"], rows["text"], rows["side"]) if side == "target"}
    assert set(candidates) == {"de_1_0", "de_1_1", "en_1_0", "en_1_1"}
    assert candidates["en_1_1"] == "Blue two.Red one. Blue two."  # sentence + paragraph, as XTREME-R encodes it


# ---------------------------------------------------------------------------------- spec and plan


def _retrieval_tree(out, target: str, languages: list[str], intermediate=()) -> dict:
    tree = small_spec_tree(out, intermediate=intermediate, target=target, name=f"retrieval-{target}")
    del tree["target"]["training"]  # nothing to train
    tree["evaluation"].update(languages=languages, split="test")
    return tree


def test_a_retrieval_target_has_no_phase_and_forbids_training_settings(tmp_path):
    from xit_dist.config.layout import phase_dir
    from xit_dist.plan.phases import build_plan, encoder_evaluation
    from xit_dist.run.session import PreparedRun
    from xit_dist.config.load import validate_tree

    spec = validate_tree(_retrieval_tree(tmp_path, "bucc", ["de"], intermediate=("mnli",)))
    phases = build_plan(spec)
    assert [p.kind for p in phases] == ["intermediate"]
    evaluation = encoder_evaluation(spec, phases)
    assert evaluation.upstream is phases[0] and evaluation.hash != phases[0].hash
    assert spec.target.training.max_seq_length == 512
    # what gets evaluated: the intermediate phase's saved encoder
    run = PreparedRun(spec, tmp_path, tmp_path, None, phases, "")
    assert run.init_dir(evaluation) == str(phase_dir(spec, phases[0]) / "encoder")
    from xit_dist.plan.view import render_plan

    shown = render_plan(spec)
    assert f"target bucc: no training phase; evaluated straight from the encoder of phase 1 ({phases[0].id})" in shown
    assert "hidden_states[1] of 2 layers, mean pooling, max length 512" in shown
    tree = _retrieval_tree(tmp_path, "bucc", ["de"])
    tree["target"]["training"] = {"learning_rate": 1e-3}
    with pytest.raises(SpecError, match="training.learning_rate: bucc is evaluated straight from the encoder"):
        validate_tree(tree)
    tree = small_spec_tree(tmp_path, intermediate=("bucc",), target="xnli")
    with pytest.raises(SpecError, match="intermediate.0.task: task 'bucc' has no training data"):
        validate_tree(tree)


# ---------------------------------------------------------------------------------- real runs


def _run(tree):
    from xit_dist.run.scheduler import run_experiment
    from xit_dist.config.load import validate_tree

    return run_experiment(validate_tree(tree))


def _child_runs(summary):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(summary.tracking_uri)
    experiment = client.get_run(summary.parent_run_id).info.experiment_id
    return client, client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{summary.parent_run_id}'")


@pytest.mark.ray
def test_tatoeba_from_the_base_model_in_a_ray_run(ray_cluster, tmp_path):
    from xit_dist.builtin.assets import resolve_model_dir

    summary = _run(_retrieval_tree(tmp_path, "tatoeba", ["de", "zh"]))
    assert summary.phases == []  # no training phase at all
    client, children = _child_runs(summary)
    assert [c.info.run_name for c in children] == ["evaluation:tatoeba"]
    child = children[0]
    assert child.data.params["evaluation.encoder"] == resolve_model_dir("builtin:xlmr-tiny")
    for run in (client.get_run(summary.parent_run_id), child):
        assert run.info.status == "FINISHED"
        assert {k for k in run.data.metrics} == {"tatoeba.accuracy.de", "tatoeba.accuracy.zh", "tatoeba.accuracy.avg"}
    metrics = summary.results.mlflow_metrics()
    assert summary.results.counts == {"de": 200, "zh": 200}  # the demo's pairs per language
    # Chance is 0.5% (200 candidates). German writes 70% of its words like English; Chinese 5%.
    assert metrics["tatoeba.accuracy.de"] > 50.0
    assert 0.0 <= metrics["tatoeba.accuracy.zh"] < metrics["tatoeba.accuracy.de"] <= 100.0


@pytest.mark.ray
def test_bucc_from_a_reused_intermediate_encoder_in_a_ray_run(ray_cluster, tmp_path):
    """No training runs: the intermediate phase is already done (its encoder: the tiny model
    re-initialised, so it differs from the base model) and is reused; BUCC is mined with its
    encoder, which is what the evaluation worker group loads."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from xit_dist.builtin.assets import resolve_data_dir, resolve_model_dir
    from xit_dist.evaluate.zero_shot import evaluate_languages
    from xit_dist.config.layout import phase_dir
    from xit_dist.plan.phases import build_plan
    from xit_dist.config.load import validate_tree
    from xit_dist.evaluate.job import EvalJob

    tree = _retrieval_tree(tmp_path, "bucc", ["de", "zh"], intermediate=("mnli",))
    spec = validate_tree(tree)
    (phase,) = build_plan(spec)
    base = resolve_model_dir("builtin:xlmr-tiny")
    torch.manual_seed(1)
    encoder_dir = phase_dir(spec, phase) / "encoder"
    AutoModel.from_config(AutoConfig.from_pretrained(base)).save_pretrained(encoder_dir)
    AutoTokenizer.from_pretrained(base).save_pretrained(encoder_dir)
    (encoder_dir.parent / "phase.json").write_text(json.dumps({"phase_id": phase.id, "note": "test fixture"}))

    summary = _run(tree)
    assert [o.reused for o in summary.phases] == [True]
    client, children = _child_runs(summary)
    assert sorted(c.info.run_name for c in children) == ["evaluation:bucc", "intermediate:mnli"]
    evaluation = next(c for c in children if c.info.run_name == "evaluation:bucc")
    assert evaluation.data.params["evaluation.encoder"] == str(encoder_dir)
    parent = client.get_run(summary.parent_run_id)
    assert set(parent.data.metrics) == {"bucc.f1.de", "bucc.f1.zh", "bucc.f1.avg"}
    assert evaluation.data.metrics == parent.data.metrics and evaluation.info.status == "FINISHED"
    assert summary.results.counts == {"de": 100, "zh": 100}  # gold pairs of the test ("training") part
    f1 = summary.results.column("f1")
    # German shares 70% of its words with English, Chinese 5%: mining works for German only.
    assert f1["de"] > 50.0 and 0.0 <= f1["zh"] < f1["de"] <= 100.0
    assert len(list((tmp_path / "phases").glob("bucc-*/eval/*.json"))) == 1  # cached under its own id
    # The base model, evaluated the same way in process, scores German differently.
    job = EvalJob(phase_id="base", task="bucc", model_dir=None, data_dir=str(resolve_data_dir("builtin:demo")), data_revision=None,
                  split="test", languages=["de"], batch_size=64, options=FormatOptions(max_seq_length=512),
                  max_examples_per_language=None, bf16=False, cpus_per_worker=1)
    on_base = evaluate_languages(AutoModel.from_pretrained(base), AutoTokenizer.from_pretrained(base), job, 0, 1, torch.device("cpu"), verbose=False)
    assert on_base["results"]["de"]["f1"] != pytest.approx(f1["de"])
