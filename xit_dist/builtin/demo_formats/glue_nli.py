"""Demo data for the English pair-classification intermediate tasks beyond MNLI: QQP, SST-2
and the ANLI+ sources (ANLI rounds 1-3, SNLI), in the hub schemas of `nyu-mll/glue`,
`facebook/anli` and `stanfordnlp/snli`.

- QQP: question-like pairs from the PAWS-style generator (duplicate = paraphrase), so QQP
  is the same skill as PAWS-X, as the paper's QQP -> PAWS-X transfer suggests it is.
- SST-2: one clause; sentiment is the polarity of its adjective (one word of each antonym
  pair counts as positive), flipped by negation. Clauses without an adjective are not written.
- ANLI / SNLI: the NLI generator on independent streams; SNLI train carries 2% rows with label
  -1 (no gold label, as on the hub), which the format drops. ANLI rounds get more
  distractor clauses as the round grows (harder premises, as ANLI's rounds are harder).
"""

from __future__ import annotations

import dataclasses

from xit_dist.builtin.demo_data import (
    NLI_LABELS,
    OPTIONAL_SLOTS,
    DemoWorld,
    FactSampler,
    concept_keys,
    nli_items,
    paws_items,
    split_files,
)

VERSION = "2"  # 2: ANLI and SNLI under their hub config, plain_text
DEMO_LANGUAGES: dict[str, tuple[str, ...]] = {"qqp": ("en",), "sst2": ("en",), "anli_plus": ("en",)}

QQP_SIZES = {"train": 1500, "validation": 300}
SST2_SIZES = {"train": 1500, "validation": 300}
ANLI_SIZES = {"train": 600, "dev": 150, "test": 150}
SNLI_SIZES = {"train": 1200, "validation": 200, "test": 200}
SNLI_NO_GOLD_RATE = 0.02
# The adjective of each antonym pair that reads as positive.
POSITIVE_ADJECTIVES = frozenset({"adjective:new", "adjective:large", "adjective:light", "adjective:cheap",
                                 "adjective:clean", "adjective:full", "adjective:white", "adjective:dry"})


def _qqp_rows(world: DemoWorld) -> dict[str, list[dict]]:
    english = world.renderers["en"]
    rows = {}
    for split, size in QQP_SIZES.items():
        items = paws_items(world.seed, f"qqp/{split}", size)
        rows[split] = [
            {
                "question1": english.sentence(item.sentence1),
                "question2": english.sentence(item.sentence2),
                "label": int(item.label),  # GLUE: 0 not_duplicate, 1 duplicate
                "idx": idx,
            }
            for idx, item in enumerate(items)
        ]
    return rows


def _sst2_rows(world: DemoWorld) -> dict[str, list[dict]]:
    english = world.renderers["en"]
    adjectives = concept_keys("adjective")
    rows = {}
    for split, size in SST2_SIZES.items():
        rng = world.rng(f"sst2/{split}")
        sampler = FactSampler(rng)
        rows[split] = []
        for idx in range(size):
            positive = idx % 2 == 0
            negated = rng.random() < 0.3
            wanted_positive = positive != negated
            adjective = rng.choice([a for a in adjectives if (a in POSITIVE_ADJECTIVES) == wanted_positive])
            visible = {slot for slot in OPTIONAL_SLOTS if rng.random() < 0.5} | {"adjective"}
            clause = sampler.show_only(sampler.full_clause(avoid={adjective}), visible, negated=negated)
            clause = dataclasses.replace(clause, adjective=adjective)
            rows[split].append({"sentence": english.sentence([clause]), "label": int(positive), "idx": idx})
        rng.shuffle(rows[split])
    return rows


def _nli_rows(world: DemoWorld, stream: str, size: int, distractor_probability: float, no_gold_rate: float = 0.0):
    english = world.renderers["en"]
    rng = world.rng(f"{stream}/no-gold")
    return [
        {
            "premise": english.sentence(item.premise),
            "hypothesis": english.sentence([item.hypothesis]),
            "label": -1 if rng.random() < no_gold_rate else NLI_LABELS.index(item.label),
        }
        for item in nli_items(world.seed, stream, size, distractor_probability)
    ]


def files(world: DemoWorld) -> dict[str, list[dict]]:
    out = {**split_files("nyu-mll/glue/qqp", _qqp_rows(world)), **split_files("nyu-mll/glue/sst2", _sst2_rows(world))}
    for round_ in (1, 2, 3):
        for part, size in ANLI_SIZES.items():
            rows = _nli_rows(world, f"anli/r{round_}/{part}", size, distractor_probability=0.4 + 0.2 * round_)
            for index, row in enumerate(rows):
                row.update(uid=f"r{round_}-{part}-{index}", reason="")
            out[f"facebook/anli/plain_text/{part}_r{round_}.jsonl"] = rows
    for split, size in SNLI_SIZES.items():
        rate = SNLI_NO_GOLD_RATE if split == "train" else 0.0
        out[f"stanfordnlp/snli/plain_text/{split}.jsonl"] = _nli_rows(world, f"snli/{split}", size, 0.0, rate)
    return out


def corpus(world: DemoWorld) -> list[str]:
    return []  # every word comes from the shared lexicon
