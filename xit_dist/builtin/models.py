"""Built-in tiny XLM-R checkpoints, so the pipeline runs offline without the hub.

``build_builtin_model`` writes a directory laid out like a hub XLM-R checkpoint (tokenizer files,
``config.json``, ``model.safetensors``) that ``AutoTokenizer``/``AutoConfig``/``AutoModelFor*``
load with ``from_pretrained``. The tokenizer is a SentencePiece-style Unigram model trained on
``xit_dist.builtin.demo_data.demo_corpus``; the weights are randomly initialised (no pretraining), so
any cross-lingual transfer it shows comes only from surface forms the languages share.
"""

from __future__ import annotations

import json
from pathlib import Path

from xit_dist.builtin.demo_data import demo_corpus, generator_version
from xit_dist.builtin.publish import publish_once

ASSETS_VERSION = "2"  # bump whenever the built files change: cached builds are keyed on it
MARKER_NAME = "xit_builtin_model.json"
# An upper bound: on the demo corpus the trainer keeps ~1,300 pieces, every demo word a single piece.
TOKENIZER_VOCAB_SIZE = 3000

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0..3, as in XLM-R; <mask> is the last id
MASK_TOKEN = "<mask>"

TINY_CONFIGS: dict[str, dict] = {
    "xlmr-tiny": dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        max_position_embeddings=258,
    ),
    "xlmr-small": dict(
        hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024,
        max_position_embeddings=514,
    ),
}


def builtin_config(name: str) -> dict:
    """The parts of a built-in model's config.json known without building it (the length check
    reads these): the XLM-R model type and the tokenizer's padding id, as ``_build`` writes them."""
    return {"model_type": "xlm-roberta", "pad_token_id": SPECIAL_TOKENS.index("<pad>"), **TINY_CONFIGS[name]}


def train_tokenizer(sentences: list[str], vocab_size: int = TOKENIZER_VOCAB_SIZE):
    """A ``tokenizers.Tokenizer`` laid out like XLM-R's: Unigram, ▁-prefixed pieces, <s> A </s></s> B </s>.

    The pre-tokenizer (whitespace split, then Metaspace) is the one transformers'
    XLMRobertaTokenizer rebuilds when it reloads the saved vocabulary. That rebuild drops the NFKC
    normalizer, which is harmless here because the demo text is NFKC already, so text is segmented
    the same before and after ``save_pretrained``.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram
    from tokenizers.trainers import UnigramTrainer

    def with_pipeline(model) -> Tokenizer:
        tokenizer = Tokenizer(model)
        tokenizer.normalizer = normalizers.NFKC()
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")]
        )
        tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
        return tokenizer

    draft = with_pipeline(Unigram())
    # vocab_size - 1 leaves room for <mask>
    trainer = UnigramTrainer(vocab_size=vocab_size - 1, special_tokens=list(SPECIAL_TOKENS), unk_token="<unk>")
    draft.train_from_iterator(sentences, trainer=trainer)

    # Re-create the model from a canonical piece list with <mask> appended (XLM-R keeps it last in
    # the vocabulary, not as an out-of-vocabulary added token).
    pieces = _canonical_pieces(json.loads(draft.to_str())["model"]["vocab"])
    unk_id = SPECIAL_TOKENS.index("<unk>")
    tokenizer = with_pipeline(Unigram(pieces + [(MASK_TOKEN, 0.0)], unk_id=unk_id, byte_fallback=False))
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True) for token in SPECIAL_TOKENS]
        + [AddedToken(MASK_TOKEN, lstrip=True, special=True)]
    )
    bos_id, eos_id = tokenizer.token_to_id("<s>"), tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos_id), ("</s>", eos_id)],
    )
    return tokenizer


def _canonical_pieces(trained: list[list]) -> list[tuple[str, float]]:
    """The trained pieces in an order and with scores that do not depend on the process.

    Why: the `tokenizers` Unigram trainer is not reproducible run to run. Its EM sums floats in
    varying order (scores differ by ~1e-15), and the pieces it must keep but EM dropped (mostly
    single characters) get scores on a 1e-4 grid handed out in hash-set order. The piece set and
    the multiset of scores are stable, so: round the scores, hand the grid scores to the grid
    pieces in sorted order, and order the vocabulary by (score, text).
    """
    specials = [(piece, 0.0) for piece in SPECIAL_TOKENS]
    learned = [(piece, round(score, 8)) for piece, score in trained if piece not in SPECIAL_TOKENS]

    def grid_phase(score: float) -> int:  # position of the score within its 1e-4 step, in 1e-7 units
        return round(score * 1e7) % 1000

    phases = [grid_phase(score) for _, score in learned]
    common_phase = max(set(phases), key=lambda phase: (phases.count(phase), phase))
    on_grid = [(piece, score) for (piece, score), phase in zip(learned, phases) if phase == common_phase]
    off_grid = [(piece, score) for (piece, score), phase in zip(learned, phases) if phase != common_phase]
    grid_scores = sorted((score for _, score in on_grid), reverse=True)
    regridded = list(zip(sorted(piece for piece, _ in on_grid), grid_scores))
    return specials + sorted(off_grid + regridded, key=lambda item: (-item[1], item[0]))


def _build(name: str, directory: Path, seed: int) -> dict:
    """Tokenizer, config and randomly initialised MLM weights for ``name``, saved into ``directory``."""
    import torch
    from tokenizers import AddedToken
    from transformers import XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaTokenizerFast

    backend = train_tokenizer(demo_corpus(seed))
    tokenizer = XLMRobertaTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token=AddedToken(MASK_TOKEN, lstrip=True, special=True),
        model_max_length=TINY_CONFIGS[name]["max_position_embeddings"] - 2,
    )
    tokenizer.save_pretrained(directory)

    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **TINY_CONFIGS[name],
    )
    torch.manual_seed(seed)
    model = XLMRobertaForMaskedLM(config)
    model.save_pretrained(directory)  # model.safetensors
    return {"vocab_size": len(tokenizer), "parameters": sum(p.numel() for p in model.parameters())}


def build_builtin_model(name: str, out_dir: Path, *, seed: int = 0) -> Path:
    """Write the built-in checkpoint ``name`` into ``out_dir`` (once) and return ``out_dir``.

    Idempotent and atomic: a finished build for the same name, seed and assets version is reused,
    and concurrent callers never see a half-written directory (see ``publish_once``).
    """
    if name not in TINY_CONFIGS:
        raise ValueError(f"unknown built-in model {name!r}; known: {', '.join(sorted(TINY_CONFIGS))}")
    # The tokenizer is trained on the synthetic corpus, so a new generator version means a new build.
    identity = {
        "builtin_model": name, "assets_version": ASSETS_VERSION, "corpus_version": generator_version(), "seed": seed,
    }
    return publish_once(
        Path(out_dir), marker=MARKER_NAME, identity=identity, build=lambda directory: _build(name, directory, seed)
    )
