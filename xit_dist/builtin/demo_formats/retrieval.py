"""Demo data for the retrieval tasks, from the synthetic world of ``xit_dist.builtin.demo_data``:
Tatoeba in the hub schema (``google/xtreme`` ``tatoeba.<iso3>``), and BUCC 2018, LAReQA
(XQuAD-R) and Mewsli-X in their release layouts (their hub copies are unusable, see the task
modules), under the demo root:

- Tatoeba (de es fr ru sw zh ja): ``TATOEBA_PAIRS`` clauses per language, each rendered in the
  language (source_sentence) and in English (target_sentence); a separate stream per language,
  as the hub's English sides differ between languages.
- BUCC (de fr ru zh): ``bucc2018/<l>-en/<l>-en.{sample,training}.{<l>,en,gold}``. Each part mixes
  translation pairs (the gold) with as many unrelated sentences on each side, shuffled under
  BUCC-style ids (``de-000000042``).
- LAReQA (en de es ru zh): ``lareqa/xquad-r/<lang>.json``, 11-way-parallel-style SQuAD JSON with
  ``sentence_breaks``: the extractive-QA demo's XQuAD items (a context of 2-4 clauses, one
  question about one clause), one paragraph per question.
- Mewsli-X (mentions in en de es ja): ``mewslix/candidate_set_entities.jsonl`` and
  ``mewslix/wikinews_mentions-{dev,test}.jsonl``. An entity is named by an adjective and a place
  ("old market"); its description is two sentences in a random demo language, each starting with
  its name. An article is three sentences in the mention language, two of them starting with an
  entity's name (the mention). Dev and test use disjoint entities, as Mewsli-X splits by QID;
  the candidate set holds every entity plus unmentioned ones.

What the numbers mean: nothing is trained for these tasks; the (randomly initialised) encoder's
mean-pooled states are close for two sentences mostly when they share tokens. A translation
shares the words its language writes like English (``LANGUAGE_SHARE``: de 0.7 ... zh/ja 0.05)
and the digits, so retrieval and mining work well for German and fall towards chance for
Chinese and Japanese: the transfer gap comes from surface overlap only (an intermediate-trained
encoder can change it), not from anything about the real languages. Mewsli-X follows the same
pattern (a mention finds its entity through the name words it shares with the description).
LAReQA stays close to chance for such an encoder (mAP@20 of a few points against ~0.4 at
random): a candidate is its sentence followed by its whole paragraph, so all candidates of a
paragraph look alike, and mean-pooled random states mostly reflect length, which separates a
short question from every long candidate alike.
"""

from __future__ import annotations

import json
import random

from xit_dist.builtin.demo_data import DemoWorld, FactSampler, Renderer
from xit_dist.builtin.demo_formats.extractive_qa import qa_items, qa_renderers

VERSION = "1"
DEMO_LANGUAGES: dict[str, tuple[str, ...]] = {
    "tatoeba": ("de", "es", "fr", "ru", "sw", "zh", "ja"),
    "bucc": ("de", "fr", "ru", "zh"),
    "lareqa": ("en", "de", "es", "ru", "zh"),
    "mewslix": ("en", "de", "es", "ja"),
}
TATOEBA_PAIRS = 200
# (gold pairs, unrelated sentences per side) of BUCC's sample (our dev) and training (our test) parts.
BUCC_SIZES = {"sample": (50, 50), "training": (100, 100)}
LAREQA_QUESTIONS = 60
MEWSLIX_ENTITIES = {"dev": 40, "test": 40, "unmentioned": 60}
MEWSLIX_ARTICLES = {"dev": 20, "test": 30}  # per mention language
MEWSLIX_DESCRIPTION_LANGUAGES = ("en", "de", "es", "fr", "ru", "sw", "zh", "ja")


def _clauses(rng: random.Random, n: int) -> list:
    """``n`` different single facts, each showing a random subset of its optional details."""
    sampler = FactSampler(rng)
    out, seen = [], set()
    while len(out) < n:
        visible = {slot for slot in ("count", "adjective", "place", "adverb") if rng.random() < 0.5}
        clause = sampler.show_only(sampler.full_clause(avoid=set()), visible)
        if clause not in seen:
            seen.add(clause)
            out.append(clause)
    return out


# ------------------------------------------------------------------------------- Tatoeba


def _tatoeba_rows(world: DemoWorld, lang: str) -> list[dict]:
    from xit_dist.tasks.tatoeba import TATOEBA_ISO3

    english, renderer = world.renderers["en"], world.renderers[lang]
    return [
        {"source_sentence": renderer.sentence([c]), "target_sentence": english.sentence([c]),
         "source_lang": TATOEBA_ISO3[lang], "target_lang": "eng"}
        for c in _clauses(world.rng(f"retrieval/tatoeba/{lang}"), TATOEBA_PAIRS)
    ]


# ------------------------------------------------------------------------------- BUCC


def _bucc_files(world: DemoWorld, lang: str) -> dict[str, list[str]]:
    english, renderer = world.renderers["en"], world.renderers[lang]
    out: dict[str, list[str]] = {}
    for part, (n_gold, n_alone) in BUCC_SIZES.items():
        rng = world.rng(f"retrieval/bucc/{lang}/{part}")
        clauses = _clauses(rng, n_gold + 2 * n_alone)
        shared, foreign_only, english_only = clauses[:n_gold], clauses[n_gold : n_gold + n_alone], clauses[n_gold + n_alone :]
        foreign = [(renderer.sentence([c]), k) for k, c in enumerate(shared)] + [(renderer.sentence([c]), None) for c in foreign_only]
        english_side = [(english.sentence([c]), k) for k, c in enumerate(shared)] + [(english.sentence([c]), None) for c in english_only]
        rng.shuffle(foreign)
        rng.shuffle(english_side)
        ids_f = {k: f"{lang}-{i + 1:09d}" for i, (_, k) in enumerate(foreign) if k is not None}
        ids_e = {k: f"en-{i + 1:09d}" for i, (_, k) in enumerate(english_side) if k is not None}
        stem = f"bucc2018/{lang}-en/{lang}-en.{part}"
        out[f"{stem}.{lang}"] = [f"{lang}-{i + 1:09d}\t{text}" for i, (text, _) in enumerate(foreign)]
        out[f"{stem}.en"] = [f"en-{i + 1:09d}\t{text}" for i, (text, _) in enumerate(english_side)]
        out[f"{stem}.gold"] = [f"{ids_f[k]}\t{ids_e[k]}" for k in sorted(ids_f, key=lambda k: ids_f[k])]
    return out


# ------------------------------------------------------------------------------- LAReQA


def _lareqa_files(world: DemoWorld) -> dict[str, list[str]]:
    items = qa_items(world, "retrieval/lareqa", LAREQA_QUESTIONS)
    renderers = qa_renderers(world)
    out = {}
    for lang in DEMO_LANGUAGES["lareqa"]:
        paragraphs = []
        for index, item in enumerate(items):
            context, question, answers = renderers[lang].row(item)
            sentences = [renderers[lang].renderer.sentence([clause]) for clause in item.clauses]
            starts = [sum(len(s) + 1 for s in sentences[:k]) for k in range(len(sentences))]
            qa = {"id": f"lareqa-demo-{index:04d}", "question": question,
                  "answers": [{"text": answers["text"][0], "answer_start": answers["answer_start"][0]}]}
            paragraphs.append({"context": context, "sentences": sentences,
                               "sentence_breaks": [[s, s + len(t)] for s, t in zip(starts, sentences)], "qas": [qa]})
        document = {"version": "1.1", "data": [{"title": "demo", "paragraphs": paragraphs}]}
        out[f"lareqa/xquad-r/{lang}.json"] = [json.dumps(document, ensure_ascii=False)]
    return out


# ------------------------------------------------------------------------------- Mewsli-X


def _entity_name(renderer: Renderer, entity: tuple[str, str]) -> str:
    adjective, place = entity
    return f"{renderer.lexicon[adjective]} {renderer.lexicon[place]}"


def _sentences_with_spans(sentences: list[str]) -> tuple[str, list[dict]]:
    text, spans = "", []
    for sentence in sentences:
        start = len(text) + (1 if text else 0)
        text = f"{text} {sentence}" if text else sentence
        spans.append({"start": start, "end": start + len(sentence)})
    return text, spans


def _mewslix_files(world: DemoWorld) -> dict[str, list]:
    from xit_dist.builtin.demo_data import concept_keys
    rng = world.rng("retrieval/mewslix")
    pool = [(a, p) for a in concept_keys("adjective") for p in concept_keys("place")]
    rng.shuffle(pool)
    counts = MEWSLIX_ENTITIES
    groups = {"dev": pool[: counts["dev"]], "test": pool[counts["dev"] : counts["dev"] + counts["test"]]}
    everything = pool[: counts["dev"] + counts["test"] + counts["unmentioned"]]
    qid = {entity: f"Q{1000 + i}" for i, entity in enumerate(everything)}
    entities = []
    for entity in everything:
        lang = rng.choice(MEWSLIX_DESCRIPTION_LANGUAGES)
        renderer, name = world.renderers[lang], _entity_name(world.renderers[lang], entity)
        description, spans = _sentences_with_spans([f"{name} {renderer.sentence([c])}" for c in _clauses(rng, 2)])
        entities.append({"entity_id": qid[entity], "title": name, "description": description, "sentence_spans": spans,
                         "description_language": lang, "description_url": f"https://{lang}.wikipedia.org/wiki/{qid[entity]}"})
    rng.shuffle(entities)
    out: dict[str, list] = {"mewslix/candidate_set_entities.jsonl": entities}
    for split, n_articles in MEWSLIX_ARTICLES.items():
        articles = []
        for lang in DEMO_LANGUAGES["mewslix"]:
            renderer = world.renderers[lang]
            for doc in range(n_articles):
                mentioned = rng.sample(groups[split], 2)
                clauses = _clauses(rng, 3)
                sentences = [renderer.sentence([c]) for c in clauses]
                names = [_entity_name(renderer, e) for e in mentioned]
                sentences[0], sentences[2] = f"{names[0]} {sentences[0]}", f"{names[1]} {sentences[2]}"
                text, spans = _sentences_with_spans(sentences)
                mentions = [
                    {"example_id": f"{split}-{lang}-{doc}-{k}", "entity_id": qid[entity],
                     "mention_span": {"start": spans[s]["start"], "end": spans[s]["start"] + len(name), "text": name}}
                    for k, (s, entity, name) in enumerate(zip((0, 2), mentioned, names))
                ]
                document_id = f"{lang}-news-{split}-{doc}"
                context = {"document_title": document_id, "document_url": f"https://{lang}.wikinews.org/wiki/{document_id}",
                           "document_id": document_id, "language": lang, "text": text, "sentence_spans": spans, "section_title": ""}
                articles.append({"context": context, "mentions": mentions})
        out[f"mewslix/wikinews_mentions-{split}.jsonl"] = articles
    return out


# ------------------------------------------------------------------------------- hooks


def files(world: DemoWorld) -> dict[str, list]:
    from xit_dist.tasks.tatoeba import TATOEBA_ISO3

    out: dict[str, list] = {}
    for lang in DEMO_LANGUAGES["tatoeba"]:
        out[f"google/xtreme/tatoeba.{TATOEBA_ISO3[lang]}/validation.jsonl"] = _tatoeba_rows(world, lang)
    for lang in DEMO_LANGUAGES["bucc"]:
        out.update(_bucc_files(world, lang))
    out.update(_lareqa_files(world))
    out.update(_mewslix_files(world))
    return out


def corpus(world: DemoWorld) -> list[str]:
    """The mention markup of Mewsli-X queries ("name: ... { name } ..."); every other word comes
    from the shared lexicon or the extractive-QA demo's question words."""
    from xit_dist.tasks.mewslix import mention_text

    lines = []
    for article in _mewslix_files(world)["mewslix/wikinews_mentions-dev.jsonl"][:20]:
        lines += [mention_text(article["context"], mention) for mention in article["mentions"]]
    return lines
