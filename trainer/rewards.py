"""GRPO rewards: named functions ``(prompts, completions, **columns) -> list[float]`` (trl style).

Each reward's ``__name__`` is the metric key trl logs (``rewards/<name>/mean``). A completion is a
whole list of rewrites (prompt v2: ``"r1 ; r2"`` or ``"none"``). Dataset columns used (written by
``qrw train data`` into ``grpo_train.jsonl``): ``query`` and ``intent`` (JSON: ``{"kind": "judged"}``,
or the pseudo-query's type, brand and values).

* ``relevance``: the **measured gain** of the list, the same quantity the training labels come from:
  nDCG@10 of the query with every rewrite merged at the serving weight, minus nDCG@10 of the
  baseline alone, under the intent's relevance proxy (``trainer.intent``), scaled by ``gain_scale``
  and clipped to [-1, 1]. ``none`` earns 0: rewriting must beat not rewriting. Measured in process
  (``RewardContext``, ``trainer.lexical``) or on the real node (``NodeRewardContext``: the merged
  body the plugin would send, searched).
* ``conversion_simulated``: SIMULATED conversion. No click or purchase logs exist for this catalog;
  a position-based click-and-purchase model over the proxy grades of the merged top 10, minus the
  same for the baseline. It is a proxy, never a measurement.
* ``validity``: 1 for a parsable list (or ``none``) with no rewrite copying the query; 0 otherwise.
* ``drift_guard``: -1 when a rewrite adds a brand, a number or an attribute value the query does
  not hold (catalog brands), else 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from qrw.plugin.prompt import NO_REWRITE, parse_rewrites
from qrw.trainer.candidates import admissible, copy_key
from qrw.trainer.facets import CatalogFacets
from qrw.trainer.intent import Intent, MergeSettings, ndcg, pseudo_intent
from qrw.trainer.lexical import LexicalIndex

RewardFunc = Callable[..., list[float]]

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


def expected_purchases(grades: Sequence[int]) -> float:
    """SIMULATED: expected purchases from a ranked list of grades under the position-based model."""
    return sum(CLICK_BY_GRADE[g] * BUY_BY_GRADE[g] / (r + 1) ** EXAMINE_ETA for r, g in enumerate(grades))


RANKINGS_KEPT = 4096
"""How many (query, rewrites) rankings a ``RewardContext`` remembers (far more than one GRPO batch)."""


class RewardContext:
    """What the rewards share: the in-process index, the facets, the intents and the merge."""

    def __init__(self, index: LexicalIndex, facets: CatalogFacets, judged: Mapping[str, Intent],
                 merge: MergeSettings, members: Mapping[str, Sequence[str]]) -> None:
        self.index = index
        self.facets = facets
        self.judged = judged
        self.merge = merge
        self.members = members
        self._intents: dict[tuple[str, str], Intent | None] = {}
        self._rankings: dict[tuple[str, tuple[str, ...]], tuple[list[str], list[str]]] = {}

    def intent(self, query: str, intent_json: str) -> Intent | None:
        key = (query, intent_json)
        if key not in self._intents:
            spec = json.loads(intent_json) if intent_json else {"kind": "judged"}
            if spec.get("kind") == "judged":
                found = self.judged.get(query)
            else:
                found = pseudo_intent(query, spec["ptype"], spec.get("brand"), spec.get("values") or (),
                                      self.facets, self.members)
            self._intents[key] = found
        return self._intents[key]

    def rankings(self, query: str, rewrites: Sequence[str]) -> tuple[list[str], list[str]]:
        """``ranked``, remembered for the last ``RANKINGS_KEPT`` (query, rewrites): GRPO scores each
        completion with the relevance and the simulated-conversion reward in turn, and both read the
        same two rankings, so the second reward must not search again."""
        key = (query, tuple(rewrites))
        if key not in self._rankings:
            if len(self._rankings) >= RANKINGS_KEPT:
                self._rankings.pop(next(iter(self._rankings)))
            self._rankings[key] = self.ranked(query, rewrites)
        return self._rankings[key]

    def ranked(self, query: str, rewrites: Sequence[str]) -> tuple[list[str], list[str]]:
        """(baseline top 10, merged top 10)."""
        original = self.index.clause_scores(query)
        merged = original.copy()
        for rewrite in rewrites:
            merged = merged + self.merge.weight * self.index.clause_scores(rewrite, operator=self.merge.operator)
        return self.index.rank(original, 10), self.index.rank(merged, 10)


class NodeRewardContext(RewardContext):
    """The same rewards measured on the real OpenSearch node: the body the plugin would send, searched."""

    def __init__(self, client, alias: str, facets: CatalogFacets, judged: Mapping[str, Intent], merge: MergeSettings,
                 members: Mapping[str, Sequence[str]], baseline) -> None:
        super().__init__(None, facets, judged, merge, members)  # type: ignore[arg-type]
        self.client = client
        self.alias = alias
        self.baseline = baseline

    def ranked(self, query: str, rewrites: Sequence[str]) -> tuple[list[str], list[str]]:
        from qrw.plugin.merge import WeightedRewrite, merge_rewrites
        from qrw.search.runner import search_many

        base = self.baseline.build(query)
        merged = merge_rewrites(base, [WeightedRewrite(r, self.merge.weight) for r in rewrites], self.merge.operator)
        rankings = search_many(self.client, self.alias, {"base": base, "merged": merged}, depth=10)
        return rankings["base"].ids, rankings["merged"].ids


def _columns(n: int, values: Sequence | None) -> Sequence:
    return values if values is not None else [""] * n


def _score_completions(context: RewardContext, prompts: Sequence, completions: Sequence, query: Sequence[str] | None,
                       intent: Sequence[str] | None, score: Callable[[Intent, list[str], list[str]], float]) -> list[float]:
    """``score(intent, baseline top 10, merged top 10)`` per completion; 0 where the query has no known
    intent or the completion holds no rewrite. Both rewards read the same two rankings."""
    out = []
    for q, spec, completion in zip(_columns(len(prompts), query), _columns(len(prompts), intent), completions):
        found = context.intent(q, spec)
        rewrites = parse_rewrites(completion_text(completion))
        if found is None or not rewrites:
            out.append(0.0)
            continue
        base, merged = context.rankings(q, rewrites)
        out.append(max(-1.0, min(1.0, score(found, base, merged))))
    return out


def make_relevance_reward(context: RewardContext, gain_scale: float = 5.0) -> RewardFunc:
    def relevance(prompts: Sequence, completions: Sequence, query: Sequence[str] | None = None,
                  intent: Sequence[str] | None = None, **_) -> list[float]:
        return _score_completions(context, prompts, completions, query, intent, lambda found, base, merged: gain_scale * (
            ndcg(merged, found, context.facets) - ndcg(base, found, context.facets)))

    return relevance


def make_conversion_reward(context: RewardContext, scale: float = 2.0) -> RewardFunc:
    def conversion_simulated(prompts: Sequence, completions: Sequence, query: Sequence[str] | None = None,
                             intent: Sequence[str] | None = None, **_) -> list[float]:
        return _score_completions(context, prompts, completions, query, intent, lambda found, base, merged: scale * (
            expected_purchases([found.grade(d, context.facets) for d in merged])
            - expected_purchases([found.grade(d, context.facets) for d in base])))

    return conversion_simulated


def repeats_a_word(rewrite: str) -> bool:
    """``smartwatch smartwatch``, ``radio 2060 radio``: a word twice in one rewrite (case ignored).

    Why: a 200-step GRPO run on CPU learnt to pad rewrites this way (docs/eval/headroom.md section 10);
    a repeated word adds nothing a search engine uses and marks a degenerate completion."""
    words = copy_key(rewrite).split()
    return len(words) != len(set(words))


def validity(prompts: Sequence, completions: Sequence, query: Sequence[str] | None = None, **_) -> list[float]:
    """1 for a parsable list (or ``none``) without a copy of the query or a rewrite that repeats a word, else 0."""
    out = []
    for q, completion in zip(_columns(len(prompts), query), completions):
        text = completion_text(completion).strip()
        first = text.split("\n", 1)[0].strip()
        rewrites = parse_rewrites(text)
        if first.casefold() == NO_REWRITE:
            out.append(1.0)
        elif not rewrites or any(copy_key(r) == copy_key(q) or repeats_a_word(r) for r in rewrites):
            out.append(0.0)
        else:
            out.append(1.0)
    return out


def make_drift_guard(facets: CatalogFacets) -> RewardFunc:
    def drift_guard(prompts: Sequence, completions: Sequence, query: Sequence[str] | None = None, **_) -> list[float]:
        out = []
        for q, completion in zip(_columns(len(prompts), query), completions):
            rewrites = parse_rewrites(completion_text(completion))
            drifted = any(not admissible(q, r, facets) and copy_key(r) != copy_key(q) for r in rewrites)
            out.append(-1.0 if drifted else 0.0)
        return out

    return drift_guard
