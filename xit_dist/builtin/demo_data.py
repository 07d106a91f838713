"""Offline stand-in for MNLI, XNLI and PAWS-X, written in the exact Hugging Face hub schemas.

What the data is: a small synthetic world, so that the whole pipeline runs without network
access. Every clause states one fact, *subject verb [count] [adjective] object [in place]
[adverb]*, over a shared concept lexicon (16 subjects, 12 verbs and 16 adjectives in antonym
pairs, 16 objects, 12 places, 10 adverbs, hypernyms such as "someone"/"things", the negative
words nobody/nothing/never/nowhere, counts 2-9 as digits). Each demo language renders the same
concepts with its own word order (adjective after the noun in es/fr/sw, verb-final ja, place
before the verb in zh, ...), its own function words (negation, conjunction, place marker) and
script (Latin; Cyrillic for ru; Han/kana for zh/ja, written word-segmented). A fixed fraction
``LANGUAGE_SHARE`` of each concept category keeps the English surface form (loanwords, shared
subwords: de 0.7, es 0.55, fr 0.4, sw 0.25, ru 0.15, zh/ja 0.05); every other concept is a
pseudo-word from the language's own syllables. Digits are shared by all languages.

Labels follow the hub conventions. NLI (MNLI ints 0/1/2, XNLI strings): entailment restates
part of a premise clause or generalises it ("someone buys apples"); contradiction negates it,
uses an antonym, changes a stated detail, or puts in a negative word ("nobody buys apples");
neutral adds a detail or an adverb the premise does not state, or swaps in another subject.
PAWS-X ("1" = paraphrase): both classes swap the clause order and/or front a place phrase;
non-paraphrases also flip a negation, put in a negative word or an antonym, exchange a role
between the clauses (same bag of words, as in PAWS) or replace a word. Like MNLI's annotation
artifacts, the label is often visible from single words; some of these cue words are function
words (negation), the rest are concepts that a language shares with English or not. Classes are
balanced; sentence lengths barely depend on the label.

What the numbers mean: a randomly initialised model fine-tuned on the English data learns
these cues (chance is 33.3% for NLI, 50% for PAWS-X). Zero-shot on another language it can
only use the cue words that language writes like English, so accuracy falls towards chance as
``LANGUAGE_SHARE`` falls and the language's function words and word order drift away from
English: a controlled, explainable transfer gap, not a claim about the real languages.

MNLI validation_mismatched stands for MNLI's other genres: every premise has a second,
unrelated clause (half of them do in train and validation_matched).
XNLI and PAWS-X validation/test rows are parallel (the same items in every language, as the
hub's human translations are); PAWS-X train for other languages renders the first 150 English
training items of each label (the hub's machine-translated train sets). All text is
NFKC-normalised and fully determined by ``seed`` and ``GENERATOR_VERSION``.
"""

from __future__ import annotations

import dataclasses
import json
import random
import unicodedata
from pathlib import Path

from xit_dist.builtin.publish import publish_once

GENERATOR_VERSION = "3"  # bump whenever the output changes: cached builds are keyed on generator_version()

DEMO_LANGUAGES: dict[str, tuple[str, ...]] = {
    "xnli": ("en", "de", "es", "fr", "ru", "sw", "zh"),
    "pawsx": ("en", "de", "es", "fr", "ja", "zh"),
}

# Fraction of content concepts a language writes exactly like English.
LANGUAGE_SHARE: dict[str, float] = {
    "en": 1.0,
    "de": 0.7,
    "es": 0.55,
    "fr": 0.4,
    "sw": 0.25,
    "ru": 0.15,
    "zh": 0.05,
    "ja": 0.05,
}

MNLI_SIZES = {"train": 3000, "validation_matched": 300, "validation_mismatched": 300}
XNLI_ROWS_PER_LANGUAGE = 200
PAWSX_SIZES = {"train": 2000, "validation": 200, "test": 200}
PAWSX_TRANSLATED_TRAIN_ROWS = 300
MANIFEST_NAME = "MANIFEST.json"

NLI_LABELS = ("entailment", "neutral", "contradiction")  # GLUE ClassLabel order: 0, 1, 2

# English surface forms of the concepts; a clause refers to them by key, e.g. "object:apples".
_CONCEPTS: dict[str, tuple[str, ...]] = {
    "subject": (
        "teacher", "doctor", "farmer", "student", "pilot", "singer", "baker", "driver",
        "nurse", "lawyer", "painter", "writer", "cook", "soldier", "hunter", "sailor",
    ),
    # Verbs and adjectives come in antonym pairs, side by side: (buys, sells), (old, new), ...
    "verb": (
        "buys", "sells", "opens", "closes", "finds", "loses", "hides", "shows", "builds", "breaks", "gives", "takes",
    ),
    "object": (
        "apples", "books", "chairs", "boxes", "letters", "bottles", "cups", "shoes", "tables", "baskets",
        "candles", "coins", "keys", "lamps", "maps", "toys",
    ),
    "adjective": (
        "old", "new", "small", "large", "heavy", "light", "cheap", "expensive",
        "clean", "dirty", "empty", "full", "black", "white", "wet", "dry",
    ),
    "place": (
        "market", "school", "garden", "village", "harbor", "kitchen", "station", "library", "forest",
        "church", "hospital", "office",
    ),
    "adverb": ("today", "yesterday", "again", "quickly", "slowly", "often", "alone", "together", "early", "late"),
    # Hypernyms of every subject / object: "someone buys things" follows from "teacher buys apples".
    "someone": ("someone", "somebody", "person", "individual"),
    "something": ("things", "items", "goods", "stuff"),
    # Negative words standing in for subject / object / adverb / place: "nobody buys apples",
    # "teacher buys nothing", "teacher never buys apples", "teacher buys apples nowhere".
    "negative": ("nobody", "nothing", "never", "nowhere"),
}
_COUNTS = tuple(str(n) for n in range(2, 10))
OPTIONAL_SLOTS = ("count", "adjective", "place")
_CLAUSE_SLOTS = ("subject", "verb", "object", "count", "adjective", "place", "adverb")


def concept_keys(category: str) -> list[str]:
    return [f"{category}:{word}" for word in _CONCEPTS[category]]


_NEGATIVE_WORD_SLOTS = {"negative:nobody": "subject", "negative:nothing": "object", "negative:never": "adverb",
                        "negative:nowhere": "place"}


def _slot_of(key: str) -> str:
    """The clause slot a concept fills (hypernyms and negative words stand in for others)."""
    category = key.split(":")[0]
    return _NEGATIVE_WORD_SLOTS.get(key) or {"someone": "subject", "something": "object"}.get(category, category)


def negative_word_for(slot: str) -> str:
    return next(key for key, key_slot in _NEGATIVE_WORD_SLOTS.items() if key_slot == slot)


def antonym_of(key: str) -> str:
    """The opposite verb or adjective ("verb:buys" -> "verb:sells")."""
    category = key.split(":")[0]
    words = concept_keys(category)
    return words[words.index(key) ^ 1]


def with_antonyms(values: set[str]) -> set[str]:
    return values | {antonym_of(value) for value in values if value.split(":")[0] in ("verb", "adjective")}


# ---------------------------------------------------------------------------------------------
# Languages: grammar (word order + function words) and lexicon (surface word per concept)


@dataclasses.dataclass(frozen=True)
class _Grammar:
    """How one language lays out a clause; ``order`` names the slots left to right.

    Slots: S subject, V verb, O object, N count, A adjective, P place phrase, T adverb,
    NEG (and NEG2 for two-part negation such as French ne ... pas).
    """

    order: tuple[str, ...]
    negation: tuple[str, ...]
    place: str  # "{}" is the place word
    count: str  # "{}" is the digit
    conjunction: str
    comma: str
    period: str
    topic: str = ""  # ja topic particle after the subject
    object_marker: str = ""  # ja accusative particle after the object


_GRAMMARS: dict[str, _Grammar] = {
    "en": _Grammar(("S", "NEG", "V", "N", "A", "O", "P", "T"), ("not",), "in {}", "{}", "and", ",", "."),
    "de": _Grammar(("S", "V", "T", "NEG", "N", "A", "O", "P"), ("nicht",), "in {}", "{}", "und", ",", "."),
    "es": _Grammar(("S", "NEG", "V", "N", "O", "A", "P", "T"), ("no",), "en {}", "{}", "y", ",", "."),
    "fr": _Grammar(("S", "NEG", "V", "NEG2", "N", "O", "A", "P", "T"), ("ne", "pas"), "à {}", "{}", "et", ",", "."),
    "sw": _Grammar(("S", "NEG", "V", "O", "A", "N", "P", "T"), ("si",), "katika {}", "{}", "na", ",", "."),
    "ru": _Grammar(("S", "T", "NEG", "V", "N", "A", "O", "P"), ("не",), "в {}", "{}", "и", ",", "."),
    "zh": _Grammar(("S", "T", "P", "NEG", "V", "N", "A", "O"), ("不",), "在 {}", "{} 个", "而且", "，", "。"),
    "ja": _Grammar(
        ("S", "T", "P", "N", "A", "O", "V", "NEG"), ("ない",), "{} で", "{} つの", "そして", "、", "。",
        topic="は", object_marker="を",
    ),
}

_LATIN_SYLLABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    # (onsets, nuclei, codas)
    "de": (
        ("b", "d", "f", "g", "h", "k", "l", "m", "n", "r", "s", "t", "w", "z", "sch", "st", "pf", "kr", "gr", "br"),
        ("a", "e", "i", "o", "u", "ei", "au", "ä", "ö", "ü", "ie"),
        ("", "", "n", "r", "l", "s", "ch", "ck", "t", "nd", "ng"),
    ),
    "es": (
        ("b", "c", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "ch", "ll", "ñ", "j"),
        ("a", "e", "i", "o", "u", "ue", "ia", "ó", "á"),
        ("", "", "", "n", "s", "r", "l"),
    ),
    "fr": (
        ("b", "c", "d", "f", "g", "j", "l", "m", "n", "p", "r", "s", "t", "v", "ch", "gr", "pl"),
        ("a", "e", "i", "o", "ou", "eau", "ai", "é", "è", "on", "an", "eu"),
        ("", "", "", "s", "t", "x", "r"),
    ),
    "sw": (
        ("b", "ch", "d", "f", "g", "h", "j", "k", "l", "m", "n", "ny", "p", "s", "t", "w", "y", "z", "mb", "nd"),
        ("a", "e", "i", "o", "u"),
        ("",),
    ),
    "ru": (
        ("б", "в", "г", "д", "ж", "з", "к", "л", "м", "н", "п", "р", "с", "т", "ф", "х", "ч", "ш", "ст", "пр"),
        ("а", "е", "и", "о", "у", "ы", "я", "ю"),
        ("", "", "н", "к", "л", "р", "й", "ть"),
    ),
}
_HAN = (
    "山水火木金土日月人口手心目耳足天雨雪风云花草竹石田林森川马牛羊鸟鱼虫米豆茶酒糖盐刀车船门窗床桌灯书笔纸"
    "画歌舞光色声江河湖海岛沙泥冰霜雷电星春夏秋冬东西南北左右前后上下中外内高低长短大小多少新旧红黄蓝绿白黑"
    "青紫银铜铁玉衣帽鞋袜布丝线针钟表镜碗盘杯瓶壶锅勺筷饭面肉蛋菜果瓜桃李梨枣杏梅兰菊松柏柳杨桥路街村城镇店"
    "楼房屋墙院园"
)
_HIRAGANA = "あいうえおかきくけこさしすせそたちてとにぬねひふへほまみむめもやゆよらりるれろわ"  # no particles/つ/な
_KATAKANA = "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワン"


def _pseudo_word(language: str, rng: random.Random) -> str:
    """One made-up word in the language's own script and syllable shapes."""
    if language == "zh":
        return "".join(rng.choice(_HAN) for _ in range(rng.choice((1, 2, 2, 2))))
    if language == "ja":
        if rng.random() < 0.5:
            return "".join(rng.choice(_KATAKANA) for _ in range(rng.choice((2, 3, 3))))
        return rng.choice(_HAN) + "".join(rng.choice(_HIRAGANA) for _ in range(rng.choice((1, 2))))
    onsets, nuclei, codas = _LATIN_SYLLABLES[language]
    syllables = rng.choice((2, 2, 3))
    return "".join(rng.choice(onsets) + rng.choice(nuclei) + rng.choice(codas) for _ in range(syllables))


def _build_lexicons(seed: int) -> dict[str, dict[str, str]]:
    """Map language -> concept key ("object:apples") -> surface word.

    A language shares exactly round(share * n) concepts of every category with English, so the
    share holds for content words and cue words (hypernyms, adverbs, negative words) alike.
    Pseudo-words are unique across all languages (no accidental false friends).
    """
    used = {word for words in _CONCEPTS.values() for word in words}
    for grammar in _GRAMMARS.values():
        used.update(grammar.negation)
        used.update((grammar.conjunction, grammar.topic, grammar.object_marker))
        used.update(grammar.place.replace("{}", " ").split())
    lexicons: dict[str, dict[str, str]] = {}
    for language in _GRAMMARS:
        rng = random.Random(f"xit-synthetic/{seed}/lexicon/{language}")
        lexicon: dict[str, str] = {}
        for category, words in _CONCEPTS.items():
            n_shared = round(LANGUAGE_SHARE[language] * len(words))
            shared = set(rng.sample(words, n_shared))
            for word in words:
                if word in shared:
                    lexicon[f"{category}:{word}"] = word
                    continue
                candidate = _pseudo_word(language, rng)
                while candidate in used or len(candidate) < 2 and language not in ("zh", "ja"):
                    candidate = _pseudo_word(language, rng)
                used.add(candidate)
                lexicon[f"{category}:{word}"] = candidate
        lexicons[language] = lexicon
    return lexicons


# ---------------------------------------------------------------------------------------------
# Language-neutral facts and their rendering


@dataclasses.dataclass(frozen=True)
class Clause:
    """One fact. Values are concept keys ("subject:teacher") or digits for ``count``;
    optional slots set to None are not mentioned."""

    subject: str
    verb: str
    object: str
    count: str | None = None
    adjective: str | None = None
    place: str | None = None
    adverb: str | None = None
    negated: bool = False
    place_fronted: bool = False

    def values(self) -> set[str]:
        return {getattr(self, slot) for slot in _CLAUSE_SLOTS} - {None}


class Renderer:
    """Turns clauses into surface sentences of one language."""

    def __init__(self, language: str, lexicon: dict[str, str]):
        self.grammar = _GRAMMARS[language]
        self.lexicon = lexicon

    def _clause_pieces(self, clause: Clause) -> list[str]:
        return [text for _, text in self.clause_slots(clause)]

    def clause_slots(self, clause: Clause) -> list[tuple[str, str]]:
        """(grammar slot, surface text) in word order; a fronted place phrase keeps slot "P" and
        carries the comma. Word-level tags (the token-tagging demo data) are read off the slots."""
        grammar, word = self.grammar, self.lexicon.get
        place_phrase = grammar.place.format(word(clause.place)) if clause.place else None
        if clause.place == "negative:nowhere":
            place_phrase = word(clause.place)
        slots = {
            "S": word(clause.subject) + (grammar.topic and f" {grammar.topic}"),
            "V": word(clause.verb),
            "O": word(clause.object) + (grammar.object_marker and f" {grammar.object_marker}"),
            "N": grammar.count.format(clause.count) if clause.count else None,
            "A": word(clause.adjective),
            "P": None if clause.place_fronted else place_phrase,
            "T": word(clause.adverb),
            "NEG": grammar.negation[0] if clause.negated else None,
            "NEG2": grammar.negation[1] if clause.negated and len(grammar.negation) > 1 else None,
        }
        pieces = [(name, slots[name]) for name in grammar.order if slots[name]]
        if clause.place_fronted and place_phrase:
            pieces = [("P", place_phrase + grammar.comma), *pieces]
        return pieces

    def sentence(self, clauses: list[Clause]) -> str:
        pieces: list[str] = []
        for position, clause in enumerate(clauses):
            if position:
                pieces.append(self.grammar.conjunction)
            pieces.extend(self._clause_pieces(clause))
        return unicodedata.normalize("NFKC", " ".join(pieces) + self.grammar.period)


class FactSampler:
    """Draws concept values that avoid a given set, so that changed words are really new."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def value(self, slot: str, avoid: set[str]) -> str:
        pool = _COUNTS if slot == "count" else concept_keys(slot)
        return self.rng.choice([value for value in pool if value not in avoid])

    def full_clause(self, avoid: set[str]) -> Clause:
        """A clause with every optional slot filled (callers hide some of them)."""
        avoid = set(avoid)
        values = {}
        for slot in _CLAUSE_SLOTS:
            values[slot] = self.value(slot, avoid)
            avoid |= with_antonyms({values[slot]})
        return Clause(**values)

    def show_only(self, clause: Clause, visible: set[str], **changes) -> Clause:
        hidden = {slot: None for slot in (*OPTIONAL_SLOTS, "adverb") if slot not in visible}
        return dataclasses.replace(clause, **{**hidden, **changes})


def weighted_choice(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


# ---------------------------------------------------------------------------------------------
# NLI items


@dataclasses.dataclass(frozen=True)
class _NliItem:
    premise: list[Clause]
    hypothesis: Clause
    label: str


# (number of optional slots the premise states, number the hypothesis states); the same for
# every label, so sentence length says little about the label.
_NLI_SLOT_COUNTS = ((1, 0), (1, 1), (2, 0), (2, 1), (2, 2))

# How each label's hypothesis is made from the premise clause it talks about. The lexical
# cues (generic words, added adverbs, negative words, negation) mimic MNLI's annotation artifacts.
_ENTAILMENT_KINDS = {"subset": 0.4, "generalise": 0.6}
_CONTRADICTION_KINDS = {"negate": 0.3, "antonym": 0.2, "change": 0.15, "negative_word": 0.35}
_NEUTRAL_KINDS = {"add_detail": 0.3, "add_adverb": 0.5, "other_subject": 0.2}


_NLI_KINDS = {"entailment": _ENTAILMENT_KINDS, "contradiction": _CONTRADICTION_KINDS, "neutral": _NEUTRAL_KINDS}


def _nli_item(rng: random.Random, label: str, distractor_probability: float) -> _NliItem:
    """A premise (the clause the hypothesis is about, maybe beside a distractor clause) and a
    hypothesis made from it by one of the label's kinds. Draws from ``rng`` in a fixed order:
    the demo data, cached and compared in tests, depends on it."""
    sampler = FactSampler(rng)
    full = sampler.full_clause(avoid=set())
    n_premise, n_hypothesis = rng.choice(_NLI_SLOT_COUNTS)
    kind = weighted_choice(rng, _NLI_KINDS[label])
    premise_slots = set(rng.sample(OPTIONAL_SLOTS, n_premise))
    opposite_slot = rng.choice(("verb", "adjective"))
    if kind == "antonym" and opposite_slot == "adjective" and "adjective" not in premise_slots:
        premise_slots = {"adjective", *rng.sample(sorted(premise_slots), n_premise - 1)}
    # A negated premise is downward monotone ("not buys 3 apples" does not entail "not buys apples"),
    # so only kinds that restate all of its details may use one.
    negated = kind in ("subset", "generalise", "negate") and rng.random() < 0.25
    adds_adverb = kind == "add_adverb" or (kind == "add_detail" and not n_hypothesis)
    premise_adverb = full.adverb if rng.random() < 0.3 and not adds_adverb else None
    target = sampler.show_only(full, premise_slots, negated=negated, adverb=premise_adverb)
    premise = _with_distractor(sampler, full, target, distractor_probability)
    kept_adverb = premise_adverb if negated or rng.random() < 0.5 else None
    basis = _HypothesisBasis(sampler, full, premise_slots, negated, kept_adverb, set().union(*(c.values() for c in premise)))
    return _NliItem(premise, _nli_hypothesis(basis, kind, opposite_slot, n_hypothesis, adds_adverb), label)


def _with_distractor(sampler: FactSampler, full: Clause, target: Clause, probability: float) -> list[Clause]:
    """The premise: ``target``, with probability ``probability`` beside an unrelated clause
    (before or after it)."""
    rng = sampler.rng
    premise = [target]
    if rng.random() < probability:
        distractor = sampler.full_clause(avoid=with_antonyms(full.values()))
        visible = set(rng.sample(OPTIONAL_SLOTS, rng.choice((1, 2))))
        adverb = distractor.adverb if rng.random() < 0.3 else None
        distractor = sampler.show_only(distractor, visible, negated=rng.random() < 0.2, adverb=adverb)
        premise.insert(rng.randrange(2), distractor)
    return premise


@dataclasses.dataclass(frozen=True)
class _HypothesisBasis:
    """What a hypothesis is made from: the premise clause in full, the optional slots the premise
    states, its negation and adverb (as the hypothesis keeps them), and every premise value."""

    sampler: FactSampler
    full: Clause
    premise_slots: set[str]
    negated: bool
    kept_adverb: str | None
    premise_values: set[str]

    def stated(self, size: int, must_include: str | None = None) -> set[str]:
        """``size`` optional slots the premise states (including ``must_include``); all if negated."""
        if self.negated:
            return set(self.premise_slots)
        others = sorted(self.premise_slots - {must_include})
        chosen = set(self.sampler.rng.sample(others, size - (must_include is not None)))
        return chosen | ({must_include} if must_include else set())

    def hypothesis(self, visible: set[str], **changes) -> Clause:
        """The premise clause showing ``visible`` slots, with the premise's negation and kept adverb unless changed."""
        return self.sampler.show_only(self.full, visible, **{"negated": self.negated, "adverb": self.kept_adverb, **changes})


def _nli_hypothesis(basis: _HypothesisBasis, kind: str, opposite_slot: str, n_hypothesis: int, adds_adverb: bool) -> Clause:
    """The hypothesis of one kind (see ``_ENTAILMENT_KINDS`` and its neighbours)."""
    rng, sampler, full, negated = basis.sampler.rng, basis.sampler, basis.full, basis.negated
    if kind == "subset":
        return basis.hypothesis(basis.stated(n_hypothesis))
    if kind == "generalise":  # only the subject under negation: "not buys apples" =/=> "not buys things"
        slot = "subject" if negated else rng.choice(("subject", "object"))
        generic = sampler.value("someone" if slot == "subject" else "something", set())
        return basis.hypothesis(basis.stated(n_hypothesis), **{slot: generic})
    if kind == "negate":
        return basis.hypothesis(basis.stated(n_hypothesis), negated=not negated)
    if kind == "antonym" and opposite_slot == "verb":
        return basis.hypothesis(basis.stated(n_hypothesis), verb=antonym_of(full.verb))
    if kind == "antonym":
        visible = basis.stated(max(n_hypothesis, 1), must_include="adjective")
        return basis.hypothesis(visible, adjective=antonym_of(full.adjective))
    if kind == "change":
        visible = basis.stated(n_hypothesis)
        slot = rng.choice(["object", *sorted(visible - {"adjective"})])
        return basis.hypothesis(visible, **{slot: sampler.value(slot, basis.premise_values)})
    if kind == "negative_word":
        slot = rng.choice(("subject", "object", "adverb", "place"))
        visible = basis.stated(n_hypothesis) - ({"count", "adjective"} if slot == "object" else set())  # "buys nothing"
        return basis.hypothesis(visible, **{slot: negative_word_for(slot)})
    if kind == "add_detail" and n_hypothesis:
        unstated = sorted(set(OPTIONAL_SLOTS) - basis.premise_slots)
        return basis.hypothesis(basis.stated(n_hypothesis - 1) | {rng.choice(unstated)})
    if adds_adverb:
        return basis.hypothesis(basis.stated(n_hypothesis), adverb=sampler.value("adverb", basis.premise_values))
    # other_subject: the premise says nothing about what this person does
    return basis.hypothesis(basis.stated(n_hypothesis), subject=sampler.value("subject", basis.premise_values))


def _balanced_labels(rng: random.Random, labels: tuple[str, ...], n: int) -> list[str]:
    sequence = [labels[i % len(labels)] for i in range(n)]
    rng.shuffle(sequence)
    return sequence


def nli_items(seed: int, stream: str, n: int, distractor_probability: float) -> list[_NliItem]:
    rng = random.Random(f"xit-synthetic/{seed}/nli/{stream}")
    return [_nli_item(rng, label, distractor_probability) for label in _balanced_labels(rng, NLI_LABELS, n)]


# ---------------------------------------------------------------------------------------------
# PAWS items


@dataclasses.dataclass(frozen=True)
class _PawsItem:
    sentence1: list[Clause]
    sentence2: list[Clause]
    label: str  # "1" paraphrase, "0" not


# How often a sentence1 clause is negated / has a negative word, so neither alone marks a non-paraphrase.
_PAWS_NEGATED_CLAUSE_RATE = 0.1
_PAWS_NEGATIVE_WORD_RATE = 0.05
_NON_PARAPHRASE_KINDS = {
    "negate": 0.35, "negative_word": 0.35, "antonym": 0.15, "swap_roles": 0.075, "replace_word": 0.075,
}


def _reorder(rng: random.Random, clauses: list[Clause]) -> list[Clause]:
    """A meaning-preserving rewrite: swap the clauses and/or move a place phrase to the front."""
    can_front = [i for i, clause in enumerate(clauses) if clause.place and not clause.place_fronted]
    swap = rng.random() < 0.7
    front = bool(can_front) and rng.random() < 0.5
    if not swap and not front:
        swap = True
    clauses = [dataclasses.replace(clause, place_fronted=False) for clause in clauses]
    if front:
        index = rng.choice(can_front)
        clauses[index] = dataclasses.replace(clauses[index], place_fronted=True)
    return clauses[::-1] if swap else clauses


def _swap_roles(rng: random.Random, clauses: list[Clause]) -> list[Clause]:
    """Exchange one slot's values between the two clauses: same words, different meaning."""
    first, second = clauses
    slots = [
        slot
        for slot in _CLAUSE_SLOTS
        if getattr(first, slot) and getattr(second, slot) and getattr(first, slot) != getattr(second, slot)
    ]
    slot = rng.choice(slots)
    return [
        dataclasses.replace(first, **{slot: getattr(second, slot)}),
        dataclasses.replace(second, **{slot: getattr(first, slot)}),
    ]


def _paws_item(rng: random.Random, label: str) -> _PawsItem:
    sampler = FactSampler(rng)
    first = sampler.full_clause(avoid=set())
    second = sampler.full_clause(avoid=with_antonyms(first.values()))
    all_values = with_antonyms(first.values() | second.values())
    kind = weighted_choice(rng, _NON_PARAPHRASE_KINDS) if label == "0" else "paraphrase"
    sentence1 = []
    for index, clause in enumerate((first, second)):
        visible = {slot for slot in (*OPTIONAL_SLOTS, "adverb") if rng.random() < 0.5}
        fronted = "place" in visible and rng.random() < 0.15
        negated = rng.random() < _PAWS_NEGATED_CLAUSE_RATE
        clause = sampler.show_only(clause, visible, negated=negated, place_fronted=fronted)
        if rng.random() < _PAWS_NEGATIVE_WORD_RATE:
            slot = rng.choice(("subject", "adverb"))
            clause = dataclasses.replace(clause, **{slot: negative_word_for(slot)})
        sentence1.append(clause)
    facts = list(sentence1)
    index = rng.randrange(2)
    if kind == "swap_roles":
        facts = _swap_roles(rng, facts)
    elif kind == "negate":
        facts[index] = dataclasses.replace(facts[index], negated=not facts[index].negated)
    elif kind == "antonym":
        slot = "adjective" if facts[index].adjective and rng.random() < 0.5 else "verb"
        facts[index] = dataclasses.replace(facts[index], **{slot: antonym_of(getattr(facts[index], slot))})
    elif kind == "negative_word":
        free_slots = [s for s in _NEGATIVE_WORD_SLOTS.values() if getattr(facts[index], s) not in _NEGATIVE_WORD_SLOTS]
        slot = rng.choice(free_slots)
        changes = {"count": None, "adjective": None} if slot == "object" else {}
        facts[index] = dataclasses.replace(facts[index], **{slot: negative_word_for(slot), **changes})
    elif kind == "replace_word":
        slot = rng.choice([slot for slot in _CLAUSE_SLOTS if getattr(facts[index], slot)])
        facts[index] = dataclasses.replace(facts[index], **{slot: sampler.value(slot, all_values)})
    return _PawsItem(sentence1, _reorder(rng, facts), label)


def paws_items(seed: int, stream: str, n: int) -> list[_PawsItem]:
    rng = random.Random(f"xit-synthetic/{seed}/paws/{stream}")
    return [_paws_item(rng, label) for label in _balanced_labels(rng, ("0", "1"), n)]


# ---------------------------------------------------------------------------------------------
# Files


def _mnli_rows(seed: int, renderer: Renderer) -> dict[str, list[dict]]:
    distractor_probability = {"train": 0.5, "validation_matched": 0.5, "validation_mismatched": 1.0}
    rows = {}
    for split, size in MNLI_SIZES.items():
        items = nli_items(seed, f"mnli/{split}", size, distractor_probability[split])
        rows[split] = [
            {
                "premise": renderer.sentence(item.premise),
                "hypothesis": renderer.sentence([item.hypothesis]),
                "label": NLI_LABELS.index(item.label),
                "idx": idx,
            }
            for idx, item in enumerate(items)
        ]
    return rows


def _xnli_rows(seed: int, renderers: dict[str, Renderer]) -> dict[str, list[dict]]:
    rows = {}
    for split in ("validation", "test"):
        items = nli_items(seed, f"xnli/{split}", XNLI_ROWS_PER_LANGUAGE, 0.5)
        rows[split] = [
            {
                "sentence1": renderers[language].sentence(item.premise),
                "sentence2": renderers[language].sentence([item.hypothesis]),
                "language": language,
                "gold_label": item.label,
            }
            for language in DEMO_LANGUAGES["xnli"]
            for item in items
        ]
    return rows


def _first_of_each_label(items: list[_PawsItem], per_label: int) -> list[_PawsItem]:
    """The earliest items, keeping the labels balanced (the translated train subsets)."""
    taken: dict[str, int] = {}
    chosen = []
    for item in items:
        if taken.get(item.label, 0) < per_label:
            taken[item.label] = taken.get(item.label, 0) + 1
            chosen.append(item)
    return chosen


def _pawsx_rows(seed: int, language: str, renderer: Renderer) -> dict[str, list[dict]]:
    rows = {}
    for split, size in PAWSX_SIZES.items():
        items = paws_items(seed, f"pawsx/{split}", size)
        if split == "train" and language != "en":
            items = _first_of_each_label(items, PAWSX_TRANSLATED_TRAIN_ROWS // 2)
        rows[split] = [
            {
                "sentence1": renderer.sentence(item.sentence1),
                "sentence2": renderer.sentence(item.sentence2),
                "label": item.label,
            }
            for item in items
        ]
    return rows


def split_files(folder: str, rows_by_split: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """``{"<folder>/<split>.jsonl": rows}`` for each split, in order (a builder's ``files`` entries)."""
    return {f"{folder}/{split}.jsonl": rows for split, rows in rows_by_split.items()}


def _write_jsonl(path: Path, rows: list[dict | str]) -> None:
    """One JSON object per line; a ``str`` row is written as it is (release-format text files, e.g. CCG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n")


@dataclasses.dataclass(frozen=True)
class DemoWorld:
    """What the demo data of every task format shares: the seed and one renderer per demo
    language over the same concept lexicon (``xit_dist.builtin.demo_formats`` builds on it)."""

    seed: int
    renderers: dict[str, Renderer]

    @classmethod
    def build(cls, seed: int) -> "DemoWorld":
        lexicons = _build_lexicons(seed)
        return cls(seed, {language: Renderer(language, lexicons[language]) for language in _GRAMMARS})

    def rng(self, stream: str) -> random.Random:
        """An independent, reproducible random stream per named use."""
        return random.Random(f"xit-synthetic/{self.seed}/{stream}")


def _build_benchmark(directory: Path, seed: int) -> dict:
    from xit_dist.builtin.demo_formats import demo_builders

    world = DemoWorld.build(seed)
    renderers = world.renderers
    files = {
        **split_files("nyu-mll/glue/mnli", _mnli_rows(seed, renderers["en"])),
        **split_files("google/xtreme/XNLI", _xnli_rows(seed, renderers)),
    }
    for language in DEMO_LANGUAGES["pawsx"]:
        files.update(split_files(f"google/xtreme/PAWS-X.{language}", _pawsx_rows(seed, language, renderers[language])))
    languages = {task: list(langs) for task, langs in DEMO_LANGUAGES.items()}
    for builder in demo_builders():
        files.update(builder.files(world))
        languages.update({task: list(langs) for task, langs in builder.DEMO_LANGUAGES.items()})
    for relative_path, rows in files.items():
        _write_jsonl(directory / relative_path, rows)
    return {
        "languages": languages,
        "language_share": LANGUAGE_SHARE,
        "rows": {relative_path: len(rows) for relative_path, rows in files.items()},
    }


def generator_version() -> str:
    """This module's version plus every format builder's: cached builds are keyed on it."""
    from xit_dist.builtin.demo_formats import demo_builders

    return "+".join([GENERATOR_VERSION, *(f"{b.__name__.rsplit('.', 1)[-1]}{b.VERSION}" for b in demo_builders())])


def write_demo_benchmark(root: Path, *, seed: int = 0) -> Path:
    """Write the demo benchmark under ``root/{hub_id}/{config}/{split}.jsonl`` and return ``root``.

    Idempotent and atomic (see ``publish_once``): a finished build for the same generator version
    and seed is reused as is, so repeated or concurrent calls are cheap and safe.
    """
    identity = {"generator": "xit_dist.builtin.demo_data", "generator_version": generator_version(), "seed": seed}
    return publish_once(
        Path(root), marker=MANIFEST_NAME, identity=identity, build=lambda directory: _build_benchmark(directory, seed)
    )


def demo_corpus(seed: int = 0) -> list[str]:
    """Raw sentences in every demo language, for training the built-in tokenizer.

    Drawn from the same lexicon as the benchmark (but an independent sample of facts), and every
    surface word appears, so the tokenizer never needs <unk> on the demo data. Each language also
    gets comma-separated word lists (like glossaries in a web crawl): the `tokenizers` Unigram
    trainer only proposes a whole word as a piece if it occurs in two distinct pre-tokenized forms
    (e.g. "teacher" and "teacher,"), and without them most words would be split into fragments.
    """
    lexicons = _build_lexicons(seed)
    rng = random.Random(f"xit-synthetic/{seed}/corpus")
    sampler = FactSampler(rng)
    corpus = []
    for language in _GRAMMARS:
        sentences = []
        renderer = Renderer(language, lexicons[language])
        for _ in range(2):  # every concept at least twice, in a natural slot
            for category in _CONCEPTS:
                for key in concept_keys(category):
                    clause = sampler.full_clause(avoid={key})
                    sentences.append(renderer.sentence([dataclasses.replace(clause, **{_slot_of(key): key})]))
        for _ in range(800):
            clauses = []
            for _ in range(rng.choice((1, 2))):
                visible = {slot for slot in OPTIONAL_SLOTS if rng.random() < 0.5}
                clause = sampler.show_only(sampler.full_clause(avoid=set()), visible, negated=rng.random() < 0.25)
                clauses.append(dataclasses.replace(clause, place_fronted=bool(clause.place) and rng.random() < 0.2))
            sentences.append(renderer.sentence(clauses))
        words = sorted({word.rstrip(".,。、") for sentence in sentences for word in sentence.split()} - {""})
        for _ in range(2):
            rng.shuffle(words)
            for start in range(0, len(words), 8):
                sentences.append(unicodedata.normalize("NFKC", ", ".join(words[start : start + 8]) + "."))
        corpus.extend(sentences)
    from xit_dist.builtin.demo_formats import demo_builders

    world = DemoWorld.build(seed)
    for builder in demo_builders():
        corpus.extend(builder.corpus(world))
    return corpus
