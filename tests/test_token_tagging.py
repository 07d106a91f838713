"""Token tagging (UD-POS, PAN-X, CCG): first-sub-word labels, whole-word windows for long
sentences, row problems, seqeval on POS tags, the CCG reader and its licence message, the demo
data in the hub schemas, and one real Ray + DeepSpeed run (CCG -> UD-POS on the tiny model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xit_dist.data.loading import load_source
from xit_dist.errors import DataError
from xit_dist.tasks.registry import get_task
from xit_dist.tasks.ccg import CCG_NUM_TAGS
from xit_dist.tasks.formats import get_format
from xit_dist.tasks.formats.token_tagging import IGNORED, SENTENCE_COLUMN, word_windows
from xit_dist.tasks.udpos import UDPOS_CONFIG_LANGUAGE, UPOS_TAGS
from xit_dist.tasks.formats.options import FormatOptions

FMT = get_format("token_tagging")
UDPOS = get_task("udpos")
NOUN, VERB, PUNCT = (UPOS_TAGS.index(tag) for tag in ("NOUN", "VERB", "PUNCT"))
# The 33 configs google/xtreme has for UD-POS (its builder's _UD_POS_LANG list).
HUB_UDPOS_LANGUAGES = {
    "Afrikaans", "Arabic", "Basque", "Bulgarian", "Dutch", "English", "Estonian", "Finnish", "French", "German",
    "Greek", "Hebrew", "Hindi", "Hungarian", "Indonesian", "Italian", "Japanese", "Kazakh", "Korean", "Chinese",
    "Marathi", "Persian", "Portuguese", "Russian", "Spanish", "Tagalog", "Tamil", "Telugu", "Thai", "Turkish",
    "Urdu", "Vietnamese", "Yoruba",
}


@pytest.fixture(scope="module")
def wordpiece():
    """A hand-made tokenizer whose splits are known: teachers -> teach ##er ##s, garden -> gar ##den."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "teach", "##er", "##s", "buys", "apples", ".", "in", "gar", "##den"]
    backend = Tokenizer(models.WordPiece({piece: i for i, piece in enumerate(pieces)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]")


def write_udpos(root: Path, lang: str, split: str, rows: list[dict]) -> None:
    folder = root / "google" / "xtreme" / f"udpos.{UDPOS_CONFIG_LANGUAGE[lang]}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def udpos_rows(tmp_path: Path, rows: list[dict]):
    write_udpos(tmp_path, "en", "test", rows)
    source = UDPOS.eval_source("test", "en")
    return source, load_source(source, tmp_path)


def featurize(rows, source, tokenizer, max_seq_length: int, for_eval: bool = True):
    return FMT.featurize(UDPOS, rows, source, tokenizer, FormatOptions(max_seq_length=max_seq_length), for_eval=for_eval)


# ---------------------------------------------------------------------- featurisation


def test_label_on_the_first_sub_word_only(tmp_path, wordpiece):
    source, rows = udpos_rows(tmp_path, [{"tokens": ["teachers", "buys", "apples", "."], "pos_tags": [NOUN, VERB, NOUN, PUNCT]}])
    (feature,) = featurize(rows, source, wordpiece, 32, for_eval=False)
    assert wordpiece.convert_ids_to_tokens(feature["input_ids"]) == ["[CLS]", "teach", "##er", "##s", "buys", "apples", ".", "[SEP]"]
    assert feature["labels"] == [IGNORED, NOUN, IGNORED, IGNORED, VERB, NOUN, PUNCT, IGNORED]
    assert set(feature) == {"input_ids", "attention_mask", "labels"}  # exactly the forward's arguments


def test_a_word_without_sub_words_becomes_unk_and_keeps_its_tag(tmp_path, wordpiece):
    source, rows = udpos_rows(tmp_path, [{"tokens": ["buys", "", "."], "pos_tags": [VERB, NOUN, PUNCT]}])
    (feature,) = featurize(rows, source, wordpiece, 32)
    assert wordpiece.convert_ids_to_tokens(feature["input_ids"]) == ["[CLS]", "buys", "[UNK]", ".", "[SEP]"]
    assert feature["labels"] == [IGNORED, VERB, NOUN, PUNCT, IGNORED]


def test_word_windows_keep_whole_words():
    assert list(word_windows([3, 1, 1, 1], 4)) == [(0, 2), (2, 4)]
    assert list(word_windows([1, 6, 1], 4)) == [(0, 1), (1, 2), (2, 3)]  # a word longer than a window gets its own
    assert list(word_windows([], 4)) == []


def test_long_sentences_are_split_at_word_boundaries_and_joined_for_scoring(tmp_path, wordpiece):
    """max_seq_length 6 leaves 4 sub-words per window: "teachers"(3) "buys"(1) | "apples" "in" "garden"(2) |
    "." -- XTREME's split, so no word loses its prediction."""
    words = ["teachers", "buys", "apples", "in", "garden", "."]
    tags = [NOUN, VERB, NOUN, UPOS_TAGS.index("ADP"), NOUN, PUNCT]
    source, rows = udpos_rows(tmp_path, [{"tokens": ["buys", "."], "pos_tags": [VERB, PUNCT]}, {"tokens": words, "pos_tags": tags}])
    features = featurize(rows, source, wordpiece, 6)
    assert features[SENTENCE_COLUMN] == [0, 1, 1, 1]
    assert [wordpiece.convert_ids_to_tokens(ids) for ids in features["input_ids"][1:]] == [
        ["[CLS]", "teach", "##er", "##s", "buys", "[SEP]"],
        ["[CLS]", "apples", "in", "gar", "##den", "[SEP]"],
        ["[CLS]", ".", "[SEP]"],
    ]
    first_subwords = [[label for label in labels if label != IGNORED] for labels in features["labels"]]
    assert first_subwords[1] + first_subwords[2] + first_subwords[3] == tags
    assert FMT.num_examples(rows, features) == 2
    # Per-window predictions are joined back per sentence: perfect windows score 100, and one
    # wrong word in the last window counts against sentence 1 (PUNCT predicted as NOUN).
    assert FMT.score(UDPOS, rows, features, first_subwords, "en", FormatOptions()) == {"f1": 100.0}
    wrong = first_subwords[:3] + [[NOUN]]
    assert FMT.score(UDPOS, rows, features, wrong, "en", FormatOptions())["f1"] < 100.0


def test_a_single_word_longer_than_the_window_keeps_its_first_sub_word(tmp_path, wordpiece):
    source, rows = udpos_rows(tmp_path, [{"tokens": ["teachers", "."], "pos_tags": [NOUN, PUNCT]}])
    features = featurize(rows, source, wordpiece, 4)  # 2 sub-words per window; "teachers" has 3
    assert [wordpiece.convert_ids_to_tokens(ids) for ids in features["input_ids"]] == [
        ["[CLS]", "teach", "##er", "[SEP]"],
        ["[CLS]", ".", "[SEP]"],
    ]
    assert features["labels"] == [[IGNORED, NOUN, IGNORED, IGNORED], [IGNORED, PUNCT, IGNORED]]


def test_row_problems_are_reported_and_dropped(tmp_path, wordpiece):
    rows_in = [
        {"tokens": ["buys", "."], "pos_tags": [VERB, PUNCT]},
        {"tokens": ["buys", "apples"], "pos_tags": [VERB]},
        {"tokens": [], "pos_tags": []},
        {"tokens": ["buys"], "pos_tags": [-1]},  # ClassLabel's "no label"
    ]
    source, rows = udpos_rows(tmp_path, rows_in)
    problems = dict(FMT.row_problems(UDPOS, rows, source))
    assert problems == {
        1: "length mismatch: 2 tokens but 1 tags",
        2: "empty sentence (no tokens)",
        3: "tag out of range: word 0 has tag id -1, not in 0..16",
    }
    features = featurize(rows, source, wordpiece, 32)
    assert features[SENTENCE_COLUMN] == [0]
    assert FMT.label_counts(UDPOS, rows, source) == {"VERB": 2, "PUNCT": 1, "(invalid)": 1}


# ---------------------------------------------------------------------- prediction and scoring


class FixedLogits(torch.nn.Module):
    """Stands in for a token-classification model: argmax = the given tag ids."""

    def __init__(self, tags: list[list[int]], num_labels: int):
        super().__init__()
        self.logits = torch.nn.functional.one_hot(torch.tensor(tags), num_labels).float()

    def forward(self, input_ids, attention_mask):
        assert input_ids.shape == self.logits.shape[:2]
        return type("Output", (), {"logits": self.logits})()


def test_predict_returns_the_tags_of_first_sub_words_only(wordpiece):
    collate = FMT.collator(wordpiece)
    batch = collate([
        {"input_ids": [2, 4, 5, 6, 7, 3], "attention_mask": [1] * 6, "labels": [IGNORED, NOUN, IGNORED, IGNORED, VERB, IGNORED]},
        {"input_ids": [2, 7, 3], "attention_mask": [1] * 3, "labels": [IGNORED, VERB, IGNORED]},
    ])
    assert batch["labels"].shape == (2, 8) and batch["labels"][1, 3:].eq(IGNORED).all()  # padded with -100
    model = FixedLogits([[0, 1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14, 15]], len(UPOS_TAGS))
    assert FMT.predict(model, dict(batch), FormatOptions()) == [[1, 4], [9]]


def test_pos_tags_are_scored_by_seqeval_chunks_not_token_accuracy():
    """seqeval reads NOUN as prefix N + type OUN, so NOUN NOUN is one chunk: gold chunks (0-1 OUN,
    2 ERB, 3 UNCT), predicted (0 OUN, 1-2 ERB, 3 UNCT): 1 of 3 right -> F1 33.3; accuracy would say 75."""
    features = {SENTENCE_COLUMN: [0], "labels": [[IGNORED, NOUN, NOUN, VERB, PUNCT, IGNORED]]}
    predictions = [[NOUN, VERB, VERB, PUNCT]]
    assert FMT.score(UDPOS, None, features, predictions, "en", FormatOptions()) == {"f1": pytest.approx(100 / 3)}


def test_ner_scores_entities_and_ccg_scores_word_accuracy():
    panx, ccg = get_task("panx"), get_task("ccg")
    b_per, b_loc = panx.label_names.index("B-PER"), panx.label_names.index("B-LOC")
    features = {SENTENCE_COLUMN: [0, 1], "labels": [[IGNORED, b_per, 0, b_loc], [IGNORED, b_loc, 0]]}
    # entities: gold PER(0) LOC(2) LOC(0'); predicted PER(0) LOC(2) -> P 1, R 2/3, F1 80
    assert FMT.score(panx, None, features, [[b_per, 0, b_loc], [0, 0]], "en", FormatOptions()) == {"f1": pytest.approx(80.0)}
    assert FMT.score(ccg, None, features, [[b_per, 0, b_loc], [0, 0]], "en", FormatOptions()) == {"accuracy": 80.0}


# ---------------------------------------------------------------------- tasks and data


def test_udpos_config_names_match_the_hub():
    xtreme = UDPOS.benchmark_languages("xtreme")
    assert {UDPOS_CONFIG_LANGUAGE[lang] for lang in xtreme} == HUB_UDPOS_LANGUAGES
    assert set(UDPOS.benchmark_languages("xtreme-r")) <= set(UDPOS_CONFIG_LANGUAGE)
    assert UDPOS.eval_source("test", "zh").config == "udpos.Chinese"
    panx = get_task("panx")
    assert panx.eval_source("test", "de").describe() == "google/xtreme[PAN-X.de] split test"
    assert panx.eval_source("test", "qu").hub_id == "unimelb-nlp/wikiann"  # XTREME-R only: not a PAN-X config
    assert set(panx.benchmark_languages("xtreme-r")) > set(panx.benchmark_languages("xtreme"))


def write_ccg(folder: Path, train: list[str], dev: list[str], vocabulary: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ccg.train").write_text("\n".join(train) + "\n", encoding="utf-8")
    (folder / "ccg.dev").write_text("\n".join(dev) + "\n", encoding="utf-8")
    if vocabulary is not None:
        (folder / "tags_to_id.json").write_text(json.dumps(vocabulary), encoding="utf-8")


def test_ccg_reads_jiant_files_with_and_without_a_tag_vocabulary(tmp_path, wordpiece):
    ccg = get_task("ccg")
    train = ["teachers buys apples .\tNP (S[dcl]\\NP)/NP N .", "buys apples\t(S[dcl]\\NP)/NP N"]
    write_ccg(tmp_path / "ccg", train, ["apples\tN"])  # jiant's layout: <dir>/ccg/
    rows = load_source(ccg.train_sources[0], tmp_path)
    # Built from all files: N 3 times, (S[dcl]\NP)/NP twice, then "." and NP once each, by name.
    assert rows[0] == {
        "tokens": ["teachers", "buys", "apples", "."],
        "supertags": ["NP", "(S[dcl]\\NP)/NP", "N", "."],
        "supertag_ids": [3, 1, 0, 2],
    }
    assert load_source(ccg.eval_source("validation", "en"), tmp_path)["supertag_ids"] == [[0]]
    assert FMT.label_counts(ccg, rows, ccg.train_sources[0])["(S[dcl]\\NP)/NP"] == 2

    given = tmp_path / "given"
    write_ccg(given, train, ["apples .\tNP ."], vocabulary={"NP": 7, "N": 8, ".": 9, "(S[dcl]\\NP)/NP": 1362})
    dev = load_source(ccg.eval_source("validation", "en"), given)
    assert dev["supertag_ids"] == [[7, 9]]
    assert ccg.num_labels == CCG_NUM_TAGS
    write_ccg(given, train, ["apples .\tNP conj"], vocabulary={"NP": 7, "N": 8, ".": 9, "(S[dcl]\\NP)/NP": 1362})
    source = ccg.eval_source("validation", "en")
    dev = load_source(source, given)
    assert dict(FMT.row_problems(ccg, dev, source)) == {0: "tag out of range: word 1 has tag id -1 ('conj'), not in 0..1362"}


def test_ccg_without_files_says_it_is_licensed_and_where_to_put_them(tmp_path):
    ccg = get_task("ccg")
    with pytest.raises(DataError) as missing:
        load_source(ccg.train_sources[0], tmp_path)
    message = str(missing.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "licensed" in message and "data.task_files.ccg" in message and "ccg.train" in message
    with pytest.raises(DataError, match=r"CCGbank \(LDC-licensed\) split train: no usable hub copy; point data\.task_files"):
        load_source(ccg.train_sources[0], None)  # no directory at all: there is no hub copy to fall back on
    write_ccg(tmp_path, ["teachers buys\tNP"], [])
    (tmp_path / "ccg.train").write_text("teachers buys NP (S\\NP)\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"ccg\.train: line 1: expected '<words><TAB><supertags>'"):
        load_source(ccg.train_sources[0], tmp_path)


@pytest.fixture(scope="module")
def demo_dir():
    from xit_dist.builtin.assets import resolve_data_dir

    return resolve_data_dir("builtin:demo")


@pytest.mark.parametrize("task_name", ["udpos", "panx", "ccg"])
def test_demo_data_loads_in_the_hub_schema_without_problems(task_name, demo_dir):
    from xit_dist.builtin.demo_formats.token_tagging import DEMO_LANGUAGES, SIZES

    task = get_task(task_name)
    sources = [task.train_sources[0]] + [task.eval_source(split, lang) for split in ("validation", "test") for lang in DEMO_LANGUAGES[task_name]]
    for source in sources:
        rows = load_source(source, demo_dir)
        assert len(rows) == SIZES[source.split]
        assert list(FMT.row_problems(task, rows, source)) == []
    if task_name == "ccg":
        assert "SYNTHETIC" in (demo_dir / "ccg" / "README.txt").read_text()


# ---------------------------------------------------------------------- a real run


@pytest.mark.ray
def test_ccg_then_udpos_on_ray_and_deepspeed(ray_cluster, tmp_path):
    """Intermediate CCG (the demo's synthetic files through the reader, a 1363-way head) then
    UD-POS, zero-shot in three languages; metrics land in MLflow."""
    from mlflow.tracking import MlflowClient

    from tests.conftest import small_spec_tree
    from xit_dist.run.scheduler import run_experiment
    from xit_dist.config.load import validate_tree

    tree = small_spec_tree(tmp_path, intermediate=("ccg",), target="udpos", name="tagging")
    tree["intermediate"][0]["training"].update(max_steps=10, log_every_n_steps=5)
    tree["target"]["training"].update(max_steps=30, log_every_n_steps=10)
    tree["evaluation"].update(languages=["en", "de", "zh"], max_examples_per_language=100)
    summary = run_experiment(validate_tree(tree))

    ccg_phase, udpos_phase = summary.phases
    for outcome in summary.phases:
        losses = [loss for _, loss in outcome.record["losses"]]
        assert len(losses) >= 2 and losses[-1] < losses[0], losses
    assert udpos_phase.record["init_dir"] == str(ccg_phase.output_dir)
    assert summary.results.counts == {"en": 100, "de": 100, "zh": 100}
    scores = {lang: summary.results.per_language[lang]["f1"] for lang in ("en", "de", "zh")}
    assert all(0.0 <= score <= 100.0 for score in scores.values())
    # English is learnt: guessing the most frequent tag (NOUN) everywhere scores 0 under seqeval
    # (a sentence of equal tags is one chunk); Chinese shares 5% of its words with English.
    assert scores["en"] > 50.0, scores
    assert scores["en"] > scores["zh"], scores
    metrics = MlflowClient(summary.tracking_uri).get_run(summary.parent_run_id).data.metrics
    for lang, score in scores.items():
        assert metrics[f"udpos.f1.{lang}"] == score
    assert "udpos.transfer_gap" in metrics
