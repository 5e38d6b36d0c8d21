"""GRPO rewards: named functions ``(prompts, completions, **columns) -> list[float]`` (trl style).

Each reward's ``__name__`` is the metric key trl logs (``rewards/<name>/mean``). Rewards that need
the index, the judgments or the catalog come from small factories; the returned functions hold only
read-only state (and a search cache), so each can be tested alone with hand-made inputs.

Dataset columns used (written by ``qrw train data`` into ``grpo_train.jsonl``): ``query`` (the
original query), ``kind`` (``judged`` or ``pseudo``) and ``source_id`` (the product a pseudo-query was
made from).

* ``relevance``: retrieval feedback from the live index (the judged grades of the rewrite's top-k
  for the original query, unjudged = 0; for a pseudo-query the pseudo-grades of ``facets.hit_grade``),
  combined with the model's own tag probability (expected grade under its tag distribution).
* ``conversion_simulated``: SIMULATED conversion. No click or purchase logs exist for this catalog;
  this is a position-based click-and-purchase model over judged grades (or, for a pseudo-query,
  whether its source product reaches the top-k and how high). It is a proxy, never a measurement.
* ``validity``: 1 for a parsable, non-empty rewrite that is not a copy of the query and not a
  duplicate of an earlier completion in its group; else 0.
* ``drift_guard``: -1 when the rewrite drops or changes a brand or a number the query asked for,
  else 0 (a penalty; the KL term ``beta`` is the other guard).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence

from qrw.plugin.prompt import TAGS, normalize_text, parse_rewrite
from qrw.trainer.facets import Facets, hit_grade, numbers_in

RewardFunc = Callable[..., list[float]]
Tagger = Callable[[Sequence[tuple[str, str]]], list[float]]
"""(query, rewrite) pairs -> expected grade / 3 under the model's tag probabilities, in [0, 1]."""

# Simulated user model (position-based): the chance to examine rank r (0-based) is 1 / (r + 1) ** ETA;
# an examined product is clicked and then bought with grade-dependent chances. Chosen a priori.
EXAMINE_ETA = 1.0
CLICK_BY_GRADE = {0: 0.05, 1: 0.2, 2: 0.5, 3: 0.9}
BUY_BY_GRADE = {0: 0.0, 1: 0.05, 2: 0.2, 3: 0.5}


def completion_text(completion) -> str:
    """A completion as text (trl passes strings for text prompts, message lists for chat)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[0], dict):
        return str(completion[0].get("content", ""))
    return str(completion)


def parse_all(completions: Iterable) -> list[str | None]:
    return [parse_rewrite(completion_text(c)) for c in completions]


def _key(text: str) -> str:
    return normalize_text(text).casefold()


def validity(prompts: Sequence, completions: Sequence, query: Sequence[str] | None = None, **_) -> list[float]:
    """1.0 for a usable rewrite: parsable, non-empty, not a copy of the query, not a repeat within its group."""
    rewrites = parse_all(completions)
    queries = list(query) if query is not None else [""] * len(rewrites)
    seen: set[tuple[str, str]] = set()
    scores = []
    for prompt, q, rewrite in zip(prompts, queries, rewrites):
        if rewrite is None or _key(rewrite) == _key(q):
            scores.append(0.0)
            continue
        key = (str(prompt), _key(rewrite))
        scores.append(0.0 if key in seen else 1.0)
        seen.add(key)
    return scores


def _words(text: str) -> list[str]:
    return re.findall(r"[\w-]+", text.casefold())


def _contains(words: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return n > 0 and any(list(words[i : i + n]) == list(phrase) for i in range(len(words) - n + 1))


def make_drift_guard(brands: Iterable[str]) -> RewardFunc:
    """A ``drift_guard`` reward knowing the catalog's brands (multi-word brands matched as phrases)."""
    brand_words = sorted({tuple(_words(b)) for b in brands if _words(b)}, key=len, reverse=True)

    def brands_in(words: list[str]) -> set[tuple[str, ...]]:
        return {b for b in brand_words if _contains(words, b)}

    def drift_guard(prompts: Sequence, completions: Sequence, query: Sequence[str], **_) -> list[float]:
        """-1.0 if the rewrite drops or swaps a brand the query names, or drops or changes one of its numbers."""
        scores = []
        for q, rewrite in zip(query, parse_all(completions)):
            if rewrite is None:
                scores.append(0.0)
                continue
            q_words, r_words = _words(q), _words(rewrite)
            q_brands, r_brands = brands_in(q_words), brands_in(r_words)
            brand_drift = bool(q_brands) and (not q_brands <= r_brands or bool(r_brands - q_brands))
            q_numbers, r_numbers = numbers_in(q), numbers_in(rewrite)
            number_drift = bool(q_numbers) and (not q_numbers <= r_numbers or bool(r_numbers - q_numbers))
            scores.append(-1.0 if brand_drift or number_drift else 0.0)
        return scores

    return drift_guard


def judged_mean_grade(ranked: Sequence[str], judged: Mapping[str, int], k: int) -> float:
    """Mean judged grade of the top ``k`` (unjudged and missing slots count 0), in 0-3."""
    return sum(judged.get(doc, 0) for doc in ranked[:k]) / k


def pseudo_mean_grade(ranked: Sequence[str], source: Facets, facets_by_id: Mapping[str, Facets], k: int) -> float:
    """Mean pseudo-grade of the top ``k`` for a pseudo-query made from ``source`` (missing slots 0)."""
    return sum(hit_grade(source, facets_by_id.get(doc)) for doc in ranked[:k]) / k


def simulated_purchases(grades: Sequence[int]) -> float:
    """SIMULATED expected purchases of a ranking with these grades under the position-based model."""
    return sum(
        (1.0 / (rank + 1) ** EXAMINE_ETA) * CLICK_BY_GRADE[g] * BUY_BY_GRADE[g] for rank, g in enumerate(grades)
    )


def _search(searcher, rewrites: Sequence[str | None]) -> dict[str, list[str]]:
    return searcher.search(r for r in rewrites if r is not None)


def make_relevance_reward(searcher, qrels: Mapping[str, Mapping[str, int]], facets_by_id: Mapping[str, Facets], *,
                          k: int = 10, tagger: Tagger | None = None, tag_weight: float = 0.3) -> RewardFunc:
    """The ``relevance`` reward: ``(1 - tag_weight) * retrieval + tag_weight * model``, both in [0, 1].

    ``tagger`` may be set later through the returned function's ``tagger`` attribute (the GRPO stage
    points it at the policy being trained). Without a tagger, the reward is retrieval only.
    """

    def relevance(prompts: Sequence, completions: Sequence, query: Sequence[str], kind: Sequence[str] | None = None,
                  source_id: Sequence[str] | None = None, **_) -> list[float]:
        """Retrieval feedback from the live index, combined with the model's own tag probability."""
        rewrites = parse_all(completions)
        kinds = list(kind) if kind is not None else ["judged"] * len(rewrites)
        sources = list(source_id) if source_id is not None else [""] * len(rewrites)
        results = _search(searcher, rewrites)
        retrieval = []
        for q, rewrite, kd, sid in zip(query, rewrites, kinds, sources):
            if rewrite is None:
                retrieval.append(None)
            elif kd == "pseudo" and sid in facets_by_id:
                retrieval.append(pseudo_mean_grade(results[rewrite], facets_by_id[sid], facets_by_id, k) / 3.0)
            else:
                retrieval.append(judged_mean_grade(results[rewrite], qrels.get(q, {}), k) / 3.0)
        model_scores: list[float | None] = [None] * len(rewrites)
        active = relevance.tagger
        if active is not None and tag_weight > 0:
            idx = [i for i, r in enumerate(rewrites) if r is not None]
            if idx:
                for i, score in zip(idx, active([(query[i], rewrites[i]) for i in idx])):
                    model_scores[i] = float(score)
        out = []
        for ret, mod in zip(retrieval, model_scores):
            if ret is None:
                out.append(0.0)
            elif mod is None:
                out.append(ret)
            else:
                out.append((1.0 - tag_weight) * ret + tag_weight * mod)
        return out

    relevance.tagger = tagger
    return relevance


def make_conversion_reward(searcher, qrels: Mapping[str, Mapping[str, int]], facets_by_id: Mapping[str, Facets], *,
                           k: int = 10) -> RewardFunc:
    """The ``conversion_simulated`` reward (SIMULATED: no real click or purchase data exists)."""

    def conversion_simulated(prompts: Sequence, completions: Sequence, query: Sequence[str],
                             kind: Sequence[str] | None = None, source_id: Sequence[str] | None = None, **_) -> list[float]:
        """SIMULATED conversion in [0, 1]: position-based click-and-purchase model over judged grades
        (normalized by the best possible ranking), or for a pseudo-query 1/log2(rank + 2) of its source product."""
        rewrites = parse_all(completions)
        kinds = list(kind) if kind is not None else ["judged"] * len(rewrites)
        sources = list(source_id) if source_id is not None else [""] * len(rewrites)
        results = _search(searcher, rewrites)
        out = []
        for q, rewrite, kd, sid in zip(query, rewrites, kinds, sources):
            if rewrite is None:
                out.append(0.0)
                continue
            ranked = results[rewrite][:k]
            if kd == "pseudo" and sid:
                out.append(1.0 / math.log2(ranked.index(sid) + 2) if sid in ranked else 0.0)
                continue
            judged = qrels.get(q, {})
            ideal = simulated_purchases(sorted(judged.values(), reverse=True)[:k])
            got = simulated_purchases([judged.get(doc, 0) for doc in ranked])
            out.append(got / ideal if ideal > 0 else 0.0)
        return out

    return conversion_simulated


def expected_grade(probabilities: Sequence[float]) -> float:
    """Expected grade / 3 under tag probabilities given in ``TAGS`` order."""
    return sum(p * tag.grade for p, tag in zip(probabilities, TAGS)) / 3.0
