"""Demo data for extractive QA: SQuAD v1.1 and v2.0 (``rajpurkar/squad``, ``rajpurkar/squad_v2``)
in English, XQuAD (``google/xtreme`` ``XQuAD.<lang>``: en de es ru zh), MLQA (``MLQA.<l>.<l>``:
en de es zh) and TyDiQA-GoldP (``tydiqa``, ids ``english-...``, ``russian-...``,
``swahili-...``), in the hub schemas, from the synthetic world of ``xit_dist.builtin.demo_data``.

What the data is: a context of 1-3 clauses (one sentence each, no negation; half the contexts
have one), every clause with its own subject, verb, object and place, so each question has one
answer. A question asks about
one slot of one clause, written as that clause with the slot replaced by a question word, in the
language's own word order ("who buys apples?", "teacher buys what?", "teacher buys apples
where?"; German "wer", "was", "wo"; Chinese 谁, 什么, 哪里 ...). The answer is the slot's
surface text in the context, with its character offset: the subject word; for "what" the object
with its count and adjective when stated ("3 old apples", a contiguous span in every demo
language); for "where" the place word without its preposition. SQuAD v2.0 adds unanswerable
questions (a third of the rows, empty ``answers``): the question names an absent subject or
object, or the opposite verb of a clause ("who sells apples?" when the teacher buys them).
XQuAD and MLQA rows are parallel across languages (same items and ids), as the hub's
translations are; TyDiQA's train split mixes languages (mostly English) and its rows are not
parallel, as in TyDiQA.

What the numbers mean: a randomly initialised model fine-tuned on the English rows first learns
which slot each question word asks for (the subject opens a sentence, the object ends it or
precedes the place phrase, the place follows its marker): that alone answers the one-clause
contexts, and within a few dozen steps English EM rises from ~5 (untrained) to ~35. Finding the
clause the question's other words point to, in longer contexts, comes much later (the tiny
model is near 60 F1 after 80 steps and keeps improving slowly). Zero-shot, the question words of the other languages
never occur in English training, and only the ``LANGUAGE_SHARE`` of content words that a
language writes like English lets the model find the clause; word order moves the slots (the
place before the verb in zh, the adjective after the noun in es). So F1 falls with the share and
with word-order distance: a controlled transfer gap, not a claim about the real languages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random

from xit_dist.builtin.demo_data import Clause, DemoWorld, FactSampler, Renderer, with_antonyms

VERSION = "1"
DEMO_LANGUAGES: dict[str, tuple[str, ...]] = {
    "squad": ("en",),
    "squad_v2": ("en",),
    "xquad": ("en", "de", "es", "ru", "zh"),
    "mlqa": ("en", "de", "es", "zh"),
    "tydiqa": ("en", "ru", "sw"),
}

# Question words per demo language: who (subject), what (object), where (place).
QUESTION_WORDS: dict[str, dict[str, str]] = {
    "en": {"who": "who", "what": "what", "where": "where"},
    "de": {"who": "wer", "what": "was", "where": "wo"},
    "es": {"who": "quién", "what": "qué", "where": "dónde"},
    "fr": {"who": "qui", "what": "quoi", "where": "où"},
    "ru": {"who": "кто", "what": "что", "where": "где"},
    "sw": {"who": "nani", "what": "nini", "where": "wapi"},
    "zh": {"who": "谁", "what": "什么", "where": "哪里"},
    "ja": {"who": "誰", "what": "何", "where": "どこ"},
}
QUESTION_MARK = "?"  # NFKC turns the CJK full-width mark into this one too
QUESTION_KINDS = {"who": 0.4, "what": 0.35, "where": 0.25}
UNANSWERABLE_KINDS = ("absent_subject", "absent_object", "opposite_verb")
SQUAD_V2_UNANSWERABLE_RATE = 1 / 3

SQUAD_SIZES = {"train": 1500, "validation": 200}
XQUAD_ROWS = 150
MLQA_SIZES = {"validation": 100, "test": 150}
TYDIQA_TRAIN_ROWS = {"en": 600, "ru": 100, "sw": 100}
TYDIQA_VALIDATION_ROWS = 100
TYDIQA_PREFIXES = {"en": "english", "ru": "russian", "sw": "swahili"}
CLAUSES_PER_CONTEXT = (1, 1, 2, 3)


@dataclasses.dataclass(frozen=True)
class _QaItem:
    """A language-neutral question: the context clauses, the asked clause and slot
    (``target`` None: unanswerable), and the question clause with "wh:<kind>" in that slot."""

    clauses: list[Clause]
    question: Clause
    kind: str
    target: int | None


def _qa_item(rng: random.Random, answerable: bool) -> _QaItem:
    sampler = FactSampler(rng)
    used: set[str] = set()
    clauses = []
    for _ in range(rng.choice(CLAUSES_PER_CONTEXT)):
        full = sampler.full_clause(avoid=used)
        used |= with_antonyms(full.values())
        visible = {slot for slot in ("count", "adjective", "place") if rng.random() < 0.6}
        if rng.random() < 0.2:
            visible.add("adverb")
        clauses.append(sampler.show_only(full, visible))
    kind = rng.choices(list(QUESTION_KINDS), weights=list(QUESTION_KINDS.values()))[0]
    target = rng.randrange(len(clauses))
    if kind == "where" and not clauses[target].place:
        clauses[target] = dataclasses.replace(clauses[target], place=sampler.value("place", used))
    asked = clauses[target]
    question = {
        "who": Clause(subject="wh:who", verb=asked.verb, object=asked.object),
        "what": Clause(subject=asked.subject, verb=asked.verb, object="wh:what"),
        "where": Clause(subject=asked.subject, verb=asked.verb, object=asked.object, adverb="wh:where"),
    }[kind]
    if answerable:
        return _QaItem(clauses, question, kind, target)
    trap = rng.choice([k for k in UNANSWERABLE_KINDS if not (k == "absent_subject" and kind == "who")
                       and not (k == "absent_object" and kind == "what")])
    if trap == "absent_subject":
        question = dataclasses.replace(question, subject=sampler.value("subject", used))
    elif trap == "absent_object":
        question = dataclasses.replace(question, object=sampler.value("object", used))
    else:
        from xit_dist.builtin.demo_data import antonym_of
        question = dataclasses.replace(question, verb=antonym_of(question.verb))
    return _QaItem(clauses, question, kind, None)


def qa_items(world: DemoWorld, stream: str, n: int, unanswerable_rate: float = 0.0) -> list[_QaItem]:
    rng = world.rng(f"extractive_qa/{stream}")
    return [_qa_item(rng, answerable=rng.random() >= unanswerable_rate) for _ in range(n)]


class _QaRenderer:
    """Renders items in one language: context text, question text, answer text and offset."""

    def __init__(self, language: str, renderer: Renderer):
        self.language = language
        self.renderer = renderer
        lexicon = {**renderer.lexicon, **{f"wh:{kind}": word for kind, word in QUESTION_WORDS[language].items()}}
        self.question_renderer = Renderer(language, lexicon)

    def word(self, key: str) -> str:
        return self.renderer.lexicon[key]

    def question(self, item: _QaItem) -> str:
        sentence = self.question_renderer.sentence([item.question])
        return sentence[: -len(self.renderer.grammar.period)] + QUESTION_MARK

    def row(self, item: _QaItem) -> tuple[str, str, dict]:
        """(context, question, answers) in the hub's answers layout."""
        sentences = [self.renderer.sentence([clause]) for clause in item.clauses]
        context = " ".join(sentences)
        question = self.question(item)
        if item.target is None:
            return context, question, {"text": [], "answer_start": []}
        offset = sum(len(sentence) + 1 for sentence in sentences[: item.target])
        begin, end = self._answer_span(sentences[item.target], item.clauses[item.target], item.kind)
        answer = context[offset + begin : offset + end]
        return context, question, {"text": [answer], "answer_start": [offset + begin]}

    def _answer_span(self, sentence: str, clause: Clause, kind: str) -> tuple[int, int]:
        """Character span, within the clause's sentence, of the asked slot's words."""
        if kind == "who":
            words = [self.word(clause.subject)]
        elif kind == "where":
            words = [self.word(clause.place)]
        else:
            words = [w for w in (clause.count, clause.adjective and self.word(clause.adjective)) if w]
            words.append(self.word(clause.object))
        spans = [_token_span(sentence, word) for word in words]
        return min(start for start, _ in spans), max(end for _, end in spans)


def _token_span(sentence: str, word: str) -> tuple[int, int]:
    """Where ``word`` stands as a whole whitespace-separated token (trailing punctuation aside)."""
    position, found = 0, []
    for token in sentence.split(" "):
        if token.rstrip(".,。、") == word:
            found.append(position)
        position += len(token) + 1
    if len(found) != 1:
        raise RuntimeError(f"demo QA: {word!r} occurs {len(found)} times in {sentence!r}")
    return found[0], found[0] + len(word)


def qa_renderers(world: DemoWorld) -> dict[str, _QaRenderer]:
    for language, words in QUESTION_WORDS.items():
        clash = set(words.values()) & set(world.renderers[language].lexicon.values())
        if clash:
            raise RuntimeError(f"demo QA: question words {sorted(clash)} are also {language} content words")
    return {language: _QaRenderer(language, renderer) for language, renderer in world.renderers.items()}


def _row_id(stream: str, index: int) -> str:
    """A 24-hex id like SQuAD's, the same for an item in every language (XQuAD/MLQA are parallel)."""
    return hashlib.sha1(f"{stream}/{index}".encode()).hexdigest()[:24]


def _rows(items: list[_QaItem], renderer: _QaRenderer, stream: str, *, title: bool, prefix: str = "") -> list[dict]:
    rows = []
    for index, item in enumerate(items):
        context, question, answers = renderer.row(item)
        row = {"id": prefix + _row_id(stream, index)}
        if title:
            row["title"] = renderer.word(item.clauses[0].subject)
        row.update(context=context, question=question, answers=answers)
        rows.append(row)
    return rows


def files(world: DemoWorld) -> dict[str, list[dict]]:
    renderers = qa_renderers(world)
    english = renderers["en"]
    out: dict[str, list[dict]] = {}
    for split, size in SQUAD_SIZES.items():
        out[f"rajpurkar/squad/plain_text/{split}.jsonl"] = _rows(
            qa_items(world, f"squad/{split}", size), english, f"squad/{split}", title=True
        )
        out[f"rajpurkar/squad_v2/squad_v2/{split}.jsonl"] = _rows(
            qa_items(world, f"squad_v2/{split}", size, SQUAD_V2_UNANSWERABLE_RATE), english, f"squad_v2/{split}", title=True
        )
    xquad_items = qa_items(world, "xquad", XQUAD_ROWS)
    for language in DEMO_LANGUAGES["xquad"]:
        out[f"google/xtreme/XQuAD.{language}/validation.jsonl"] = _rows(xquad_items, renderers[language], "xquad", title=False)
    for split, size in MLQA_SIZES.items():
        items = qa_items(world, f"mlqa/{split}", size)
        for language in DEMO_LANGUAGES["mlqa"]:
            out[f"google/xtreme/MLQA.{language}.{language}/{split}.jsonl"] = _rows(
                items, renderers[language], f"mlqa/{split}", title=True
            )
    train, validation = [], []
    for language in DEMO_LANGUAGES["tydiqa"]:
        prefix = TYDIQA_PREFIXES[language] + "-"
        stream = f"tydiqa/train/{language}"
        train += _rows(qa_items(world, stream, TYDIQA_TRAIN_ROWS[language]), renderers[language], stream, title=True, prefix=prefix)
        stream = f"tydiqa/validation/{language}"
        validation += _rows(qa_items(world, stream, TYDIQA_VALIDATION_ROWS), renderers[language], stream, title=True, prefix=prefix)
    world.rng("extractive_qa/tydiqa/mix").shuffle(train)  # the hub's train split mixes languages
    out["google/xtreme/tydiqa/train.jsonl"] = train
    out["google/xtreme/tydiqa/validation.jsonl"] = validation
    return out


def corpus(world: DemoWorld) -> list[str]:
    """Questions in every demo language plus glossary lines of the question words, so the
    built-in tokenizer keeps each question word (and "?") as one piece."""
    renderers = qa_renderers(world)
    items = qa_items(world, "corpus", 150)
    sentences = []
    for language, renderer in renderers.items():
        sentences += [renderer.question(item) for item in items]
        words = list(QUESTION_WORDS[language].values())
        sentences += [", ".join(words) + ".", " ".join(words) + QUESTION_MARK]
    return sentences
