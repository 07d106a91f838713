"""Retrieval (Tatoeba, BUCC, LAReQA, Mewsli-X): no training phase. Sentences are embedded by
an encoder as it is (the base model, or the last intermediate phase's encoder) and matched by
cosine similarity, as XTREME / XTREME-R evaluate these tasks.

Embedding: ``hidden_states[layer]`` of the encoder (index 0 is the embedding layer), pooled
over the sentence: the mean over its non-padding tokens, ``<s>`` and ``</s>`` included as in
XTREME's ``mean_pool_embedding`` (``evaluation.pooling: mean``), or the first token (``cls``).
The layer is ``evaluation.retrieval_layer``, by default XTREME's recipe for XLM-R Large, layer
14 of 24 (jiant's ``hidden_states[14]``; XTREME's script passes ``--specific_layer 13`` into the
list without the embedding layer, the same tensor) scaled to the model's depth:
``round(num_hidden_layers * 14 / 24)``, i.e. 14 for XLM-R Large, 7 for a 12-layer model (XTREME's
choice for mBERT), 1 for the 2-layer built-in tiny model. (XTREME's own BUCC script pools CLS of
layer 7 for every model; jiant, the paper's code, mean-pools layer 14 for Tatoeba and BUCC alike.)

Scoring (by ``task.metric``; ``xit_dist.evaluate.metrics`` computes every metric):

- ``accuracy`` (Tatoeba): nearest neighbour by cosine. XTREME's ``similarity_search(x, y)``
  indexes ``x`` (the language's sentences) and searches it with ``y`` (the English ones), as
  jiant's ``TatoebaEvaluationScheme`` does, so the reported number is top-1 accuracy of English
  queries retrieving their translation (en -> xx); ``retrieval_accuracy`` on that similarity.
- ``f1`` (BUCC): LASER / XTREME ``mine_bitext`` in mode ``mine``, retrieval ``max``, margin
  ``ratio``, k = 4 neighbours: sentences are unified on the raw line (``text_load_unify``: two
  lines that differ only in surrounding spaces stay two sentences, with the same embedding, since
  every sentence is stripped before it is tokenised), L2-normalised; every sentence's 4 nearest
  neighbours on the other side (exact search) give its mean neighbour similarity; a candidate
  pair scores cos(x, y) / ((mean_x + mean_y) / 2); each sentence's best candidate in both
  directions, taken greedily by score with every sentence used once, and kept above 0, are the
  candidates (exactly tied scores, in practice from identical embeddings, are taken in index
  order; ``mine_bitext``'s unstable ``np.argsort`` and faiss order such ties as their sort
  happens to, so which of two identical sentences gets a partner may differ there). As
  XTREME's ``read_sent2id``, a sentence whose stripped text is on several lines is dropped. The
  threshold is ``best_threshold`` on the dev part's gold (``bucc_optimize``, ties included);
  ``bucc_f1`` applies it to the test part (the ``validation`` split scores dev at its own best
  threshold). With no dev candidate or gold pair no threshold can be chosen: F1 is 0, with a
  warning (as ``bucc_eval`` scores an empty candidate list).
- ``map_at_20`` (LAReQA, Mewsli-X): every query ranks every candidate by cosine;
  ``map_at_k(k=20)``. XTREME-R's LAReQA script ranks by the dot product of its dual encoder's
  L2-normalised encodings, i.e. by cosine, which is what we use for any encoder. A query whose
  gold is not among the candidates scores 0 and stays in the mean (``utils_mewslix.evaluate``).

Nearest neighbours are exact (a blocked matrix product with top-k in torch, on the worker's GPU
when it has one): the same search as faiss' ``IndexFlatIP`` that XTREME uses, so faiss is not
needed. The demo and test sets are tiny; the full BUCC training set (~400k x 400k sentences)
is ~1e14 multiply-adds per direction: minutes on a GPU, on the order of an hour on CPU.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Any

from xit_dist.data.hub_schema import derived_fingerprint
from xit_dist.data.tokenizer_identity import tokenizer_identity
from xit_dist.errors import DataError, SpecError, XitError
from xit_dist.tasks.base import DataSource, Task
from xit_dist.tasks.formats.base import TaskFormat, featurize_rows
from xit_dist.tasks.retrieval_rows import SOURCE, TARGET
from xit_dist.tasks.formats.options import FormatOptions

FEATURIZE_VERSION = "2"  # 2: sentences are stripped before tokenising
XTREME_LAYER, XTREME_DEPTH = 14, 24
MARGIN_NEIGHBOURS = 4  # XTREME / LASER mine_bitext neighborhood
MAP_K = 20
KNN_BLOCK_ELEMENTS = 1 << 26  # similarity entries computed at once (256 MiB in fp32)


def hidden_layer(num_hidden_layers: int, options: FormatOptions) -> int:
    """The ``hidden_states`` index to pool (0 = embeddings, n = last layer)."""
    if options.retrieval_layer is None:
        return round(num_hidden_layers * XTREME_LAYER / XTREME_DEPTH)
    if options.retrieval_layer > num_hidden_layers:
        raise SpecError(
            f"evaluation.retrieval_layer: {options.retrieval_layer} is beyond the model's {num_hidden_layers} layers "
            f"(hidden_states 0 = embeddings ... {num_hidden_layers} = last layer)"
        )
    return options.retrieval_layer


def sentence_length(tokenizer, options: FormatOptions) -> int:
    """Tokens kept per sentence: ``max_seq_length`` (512 by default for a target evaluated from
    the encoder), or the tokenizer's ``model_max_length`` when that is shorter, since the model
    cannot embed more (XLM-R: 512; the built-in tiny model: 256)."""
    return min(options.max_seq_length, tokenizer.model_max_length)


def pool(hidden, attention_mask, pooling: str):
    """(batch, length, hidden) -> (batch, hidden): mean over non-padding tokens, or the first token."""
    hidden = hidden.float()
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def knn(queries, database, k: int):
    """Exact inner-product k nearest neighbours: (similarities, indices), best first."""
    import numpy as np
    import torch

    k = min(k, len(database))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    base = torch.from_numpy(np.ascontiguousarray(database, dtype=np.float32)).to(device)
    block = max(1, KNN_BLOCK_ELEMENTS // max(1, len(database)))
    sims, idx = [], []
    for start in range(0, len(queries), block):
        chunk = torch.from_numpy(np.ascontiguousarray(queries[start : start + block], dtype=np.float32)).to(device)
        values, indices = (chunk @ base.T).topk(k, dim=1)
        sims.append(values.cpu().numpy())
        idx.append(indices.cpu().numpy())
    return np.concatenate(sims), np.concatenate(idx)


def normalised(vectors):
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def margin_candidates(x, y, k: int = MARGIN_NEIGHBOURS):
    """LASER/XTREME ``mine_bitext`` (mine, max, ratio) on normalised unique-sentence embeddings:
    ``[(x index, y index, score)]``, each sentence of either side at most once, score > 0."""
    import numpy as np

    if len(x) == 0 or len(y) == 0:
        return []
    x2y_sim, x2y_ind = knn(x, y, k)
    y2x_sim, y2x_ind = knn(y, x, k)
    x2y_mean, y2x_mean = x2y_sim.mean(axis=1), y2x_sim.mean(axis=1)
    # ratio margin: cos(x, y) / ((mean of x's neighbours + mean of y's neighbours) / 2)
    fwd = x2y_sim / ((x2y_mean[:, None] + y2x_mean[x2y_ind]) / 2)
    bwd = y2x_sim / ((y2x_mean[:, None] + x2y_mean[y2x_ind]) / 2)
    fwd_best = x2y_ind[np.arange(len(x)), fwd.argmax(axis=1)]
    bwd_best = y2x_ind[np.arange(len(y)), bwd.argmax(axis=1)]
    pairs = np.concatenate([np.stack([np.arange(len(x)), fwd_best], axis=1), np.stack([bwd_best, np.arange(len(y))], axis=1)])
    scores = np.concatenate([fwd.max(axis=1), bwd.max(axis=1)])
    seen_x, seen_y, out = set(), set(), []
    for i in np.argsort(-scores, kind="stable"):
        xi, yi = int(pairs[i, 0]), int(pairs[i, 1])
        if xi not in seen_x and yi not in seen_y:
            seen_x.add(xi)
            seen_y.add(yi)
            if scores[i] > 0:
                out.append((xi, yi, float(scores[i])))
    return out


class _Items:
    """The gathered embeddings with the columns that say which sentence each one is."""

    def __init__(self, features, predictions: list[Any]):
        import numpy as np

        self.text = list(features["text"])
        self.side = list(features["side"])
        self.id = list(features["id"])
        self.part = list(features["part"])
        self.relevant = list(features["relevant"])
        self.vectors = normalised(np.stack(predictions).astype(np.float32)) if predictions else None

    def of(self, side: str, part: str | None = None) -> list[int]:
        return [i for i, (s, p) in enumerate(zip(self.side, self.part)) if s == side and (part is None or p == part)]

    def scored_part(self) -> str:
        """BUCC's test split carries its dev part along; the test part is the one scored."""
        return "test" if "test" in self.part else self.part[0]

    def gold_queries(self, part: str) -> list[tuple[int, set[str]]]:
        """Source rows of ``part`` that have gold targets, with those present among the rows
        (all of them when none is present: the query can only score 0, as the official
        Mewsli-X evaluation scores a gold entity missing from the candidates)."""
        present = {self.id[i] for i in self.of(TARGET, part)}
        queries = ((i, set(self.relevant[i])) for i in self.of(SOURCE, part))
        return [(i, relevant & present or relevant) for i, relevant in queries if relevant]


def _pairs_to_items(pair: tuple[str, str]):
    """Tatoeba rows (one parallel pair each) -> one item per sentence; pair i has id "i"."""
    source_column, target_column = pair

    def split(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"id": [], "text": [], "side": [], "part": [], "relevant": []}
        for index, source, target in zip(indices, batch[source_column], batch[target_column]):
            for side, text, relevant in ((SOURCE, source, [str(index)]), (TARGET, target, [])):
                out["id"].append(str(index))
                out["text"].append((text or "").strip())
                out["side"].append(side)
                out["part"].append("")
                out["relevant"].append(relevant)
        return out

    return split


class Retrieval(TaskFormat):
    name = "retrieval"
    trains = False

    # ------------------------------------------------------------------ data
    def featurize(self, task: Task, rows, source: DataSource, tokenizer, options: FormatOptions, *, for_eval: bool):
        """One feature per sentence: token ids, plus text / id / side / part / relevant for ``score``."""
        if not for_eval:
            raise XitError(f"{task.name}: a retrieval task has no training data (it is evaluated straight from an encoder)")
        items = rows
        if source.columns.pair is not None:
            items = featurize_rows(
                rows, _pairs_to_items(source.columns.pair), "retrieval-pairs", source.columns.pair, FEATURIZE_VERSION,
                with_indices=True,
            )

        max_length = sentence_length(tokenizer, options)

        def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            # stripped, as XTREME's tokenize_text reads every retrieval file (BUCC's rows keep the raw line)
            encoded = tokenizer([text.strip() for text in batch["text"]], truncation=True, max_length=max_length)
            return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

        return items.map(
            encode,
            batched=True,
            new_fingerprint=derived_fingerprint(
                items, tokenizer_identity(tokenizer), max_length, self.name, FEATURIZE_VERSION
            ),
        )

    # ------------------------------------------------------------------ model
    def model_class(self):
        from transformers import AutoModel

        return AutoModel

    def embedding_layer(self, num_hidden_layers: int, options: FormatOptions) -> int:
        return hidden_layer(num_hidden_layers, options)

    def predict(self, model, batch: dict, options: FormatOptions) -> list[Any]:
        """One float32 sentence embedding (numpy) per row."""
        layer = hidden_layer(model.config.num_hidden_layers, options)
        outputs = model(**batch, output_hidden_states=True)
        return list(pool(outputs.hidden_states[layer], batch["attention_mask"], options.pooling).cpu().numpy())

    # ------------------------------------------------------------------ score
    def score(self, task: Task, rows, features, predictions: list[Any], lang: str, options: FormatOptions) -> dict[str, float]:
        scorers = {"accuracy": _nearest_neighbour, "f1": _margin_mining, "map_at_20": _ranking}
        if task.metric not in scorers:
            raise XitError(f"{task.name}: the retrieval format has no scoring for metric {task.metric!r} ({', '.join(scorers)})")
        return {task.metric: scorers[task.metric](_Items(features, predictions), task, lang)}

    def num_examples(self, rows, features) -> int:
        """Queries with gold targets in the scored part (each one scored, present or not): pairs
        (Tatoeba), gold pairs (BUCC test), questions / mentions (LAReQA, Mewsli-X)."""
        items = _Items(features, [])
        return len(items.gold_queries(items.scored_part()))


def _nearest_neighbour(items: _Items, task: Task, lang: str) -> float:
    from xit_dist.evaluate.metrics import retrieval_accuracy

    sources, targets = items.of(SOURCE), items.of(TARGET)
    if [items.id[i] for i in sources] != [items.id[i] for i in targets]:
        raise DataError(f"{task.name} {lang}: source and target sentences are not parallel")
    # English queries (rows) against the language's sentences (columns): row i's match is column i.
    return retrieval_accuracy(items.vectors[targets] @ items.vectors[sources].T)


def _mining_scores(items: _Items, part: str) -> tuple[dict[tuple[str, str], float], set[tuple[str, str]]]:
    """Candidate pairs (source id, target id) -> margin score, and the gold pairs, of one part."""
    sides = {}
    for side in (SOURCE, TARGET):
        first_of_line: dict[str, int] = {}  # unified on the raw line, as text_load_unify does
        for i in items.of(side, part):
            first_of_line.setdefault(items.text[i], i)
        lines_of_text = Counter(items.text[i].strip() for i in items.of(side, part))
        # read_sent2id maps a stripped text to its id only when no other line has that text
        ids = [items.id[i] if lines_of_text[items.text[i].strip()] == 1 else None for i in first_of_line.values()]
        sides[side] = (items.vectors[list(first_of_line.values())], ids)
    (x, x_ids), (y, y_ids) = sides[SOURCE], sides[TARGET]
    scores = {}
    for xi, yi, score in margin_candidates(x, y):
        if x_ids[xi] is not None and y_ids[yi] is not None:
            scores[(x_ids[xi], y_ids[yi])] = score
    gold = {(items.id[i], target) for i, relevant in items.gold_queries(part) for target in relevant}
    return scores, gold


def _margin_mining(items: _Items, task: Task, lang: str) -> float:
    from xit_dist.evaluate.metrics import best_threshold, bucc_f1

    dev_scores, dev_gold = _mining_scores(items, "dev")
    if _nothing_to_score(task, lang, "dev", dev_scores, dev_gold):
        return 0.0
    threshold = best_threshold(dev_scores, dev_gold)
    if items.scored_part() == "dev":
        return bucc_f1(dev_scores, dev_gold, threshold)
    test_scores, test_gold = _mining_scores(items, "test")
    if _nothing_to_score(task, lang, "test", test_scores, test_gold):
        return 0.0
    return bucc_f1(test_scores, test_gold, threshold)


def _nothing_to_score(task: Task, lang: str, part: str, scores: dict, gold: set) -> bool:
    """No candidate or no gold pair in ``part``: F1 is 0 (``bucc_eval`` scores an empty candidate
    list 0; a dev part without any leaves no threshold to choose), said in a warning, not raised."""
    if scores and gold:
        return False
    what = "gold" if not gold else "candidate"
    warnings.warn(f"{task.name} {lang}: no {part} {what} pairs (too few sentences kept?); F1 is 0", stacklevel=3)
    return True


def _ranking(items: _Items, task: Task, lang: str) -> float:
    from xit_dist.evaluate.metrics import map_at_k

    part = items.scored_part()
    queries = items.gold_queries(part)
    if not queries:
        raise DataError(f"{task.name} {lang}: no query with a gold target among the rows kept")
    candidates = items.of(TARGET, part)
    _, top = knn(items.vectors[[i for i, _ in queries]], items.vectors[candidates], MAP_K)
    ranked = [[items.id[candidates[j]] for j in row] for row in top]
    return map_at_k(ranked, [relevant for _, relevant in queries], k=MAP_K)
