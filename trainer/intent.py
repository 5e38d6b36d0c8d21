"""What a training query asks for, a relevance proxy for it, and the measured gain of a rewrite.

Why: a rewrite is only good if it retrieves what the user meant. A training label therefore asks
"does merging this rewrite into the baseline put more products of the asked-for kind on top?", not
"does it find the product this pseudo-query was cut from". Two kinds of intent:

* **judged** (a development query of a training fold): the judged grade where a product is judged;
  an unjudged product of one of the query's dominant types (the types of its grade >= 2 products)
  counts as weak (1), anything else unjudged as 0. Conservative on purpose: evaluation counts
  unjudged products as 0, so a rewrite should win by ranking judged-relevant products higher.
* **pseudo** (written from the catalog): a product type, optionally a brand and attribute values;
  ``facets.grade_for_intent`` grades every product against it (3: right type and every asked facet;
  1: right type, a facet off; 0: another type).

``measure`` scores a candidate rewrite twice with the in-process baseline (``trainer.lexical``):
merged into the query at the serving weight (the *gain*: nDCG@10 change against the baseline alone)
and alone (its *own* relevance: the share of its own top 10 that is of the asked-for kind). ``tag_for_outcome`` maps the two to
the four tags; that mapping is documented in the data card.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

from qrw.plugin.prompt import TAG_BY_NAME, Tag
from qrw.trainer.facets import CatalogFacets, dominant_types, grade_for_intent
from qrw.trainer.lexical import LexicalIndex

UNJUDGED_OF_TYPE = 1
"""Grade of an unjudged product of a judged query's dominant type."""


@dataclasses.dataclass(frozen=True)
class Intent:
    """What one training query asks for (see the module docstring)."""

    query: str
    kind: str  # "judged" | "pseudo"
    ptype: str = ""
    brand: str | None = None
    values: frozenset[str] = frozenset()
    judged: Mapping[str, int] | None = None
    judged_types: frozenset[str] = frozenset()
    ideal: tuple[int, ...] = ()
    """The grades of the best possible top 10 (for nDCG)."""

    def grade(self, doc_id: str, facets: CatalogFacets) -> int:
        if self.judged is not None:
            if doc_id in self.judged:
                return self.judged[doc_id]
            product = facets.get(doc_id)
            return UNJUDGED_OF_TYPE if product is not None and product.product_type in self.judged_types else 0
        return grade_for_intent(facets.get(doc_id), self.ptype, self.brand, self.values)


def judged_intent(query: str, judged: Mapping[str, int], facets: CatalogFacets) -> Intent:
    types = dominant_types(facets[d].product_type for d, g in judged.items() if g >= 2 and d in facets.by_id)
    ideal = tuple(sorted(judged.values(), reverse=True)[:10])
    return Intent(query, "judged", judged=dict(judged), judged_types=frozenset(types), ideal=ideal)


def pseudo_intent(query: str, ptype: str, brand: str | None, values: Sequence[str], facets: CatalogFacets,
                  type_members: Mapping[str, Sequence[str]]) -> Intent:
    intent = Intent(query, "pseudo", ptype=ptype, brand=brand, values=frozenset(values))
    grades = sorted((intent.grade(d, facets) for d in type_members.get(ptype, ())), reverse=True)[:10]
    return dataclasses.replace(intent, ideal=tuple(grades))


def _dcg(grades: Sequence[int]) -> float:
    return sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(grades))


def ndcg(ranked: Sequence[str], intent: Intent, facets: CatalogFacets, k: int = 10) -> float:
    ideal = _dcg(intent.ideal[:k])
    if ideal <= 0:
        return 0.0
    return _dcg([intent.grade(d, facets) for d in ranked[:k]]) / ideal


def on_intent(doc_id: str, intent: Intent, facets: CatalogFacets) -> bool:
    """Is the product of the kind asked for? Judged: graded >= 2, or unjudged of a dominant type; pseudo: the type."""
    if intent.judged is not None:
        if doc_id in intent.judged:
            return intent.judged[doc_id] >= 2
        product = facets.get(doc_id)
        return product is not None and product.product_type in intent.judged_types
    product = facets.get(doc_id)
    return product is not None and bool(intent.ptype) and product.product_type == intent.ptype


def on_intent_share(ranked: Sequence[str], intent: Intent, facets: CatalogFacets, k: int = 10) -> float:
    """Share of the top ``k`` (empty slots count as off) that is of the kind asked for."""
    return sum(on_intent(d, intent, facets) for d in ranked[:k]) / k


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A candidate rewrite's measured effect for one intent."""

    rewrite: str
    gain: float
    """nDCG@10 of the merged query minus nDCG@10 of the baseline alone."""
    own: float
    """Share of the rewrite's own top 10 that is of the kind the query asks for."""
    added_hits: int
    """Documents the rewrite clause matches that the original clause does not."""


@dataclasses.dataclass(frozen=True)
class MergeSettings:
    """How a rewrite is merged while it is measured (the serving merge: weight and operator)."""

    weight: float = 0.5
    operator: str = "and"


def measure(index: LexicalIndex, facets: CatalogFacets, intent: Intent, rewrites: Sequence[str],
            merge: MergeSettings = MergeSettings(), base: float | None = None) -> tuple[float, list[Outcome]]:
    """(baseline nDCG@10, one ``Outcome`` per rewrite), each rewrite merged alone."""
    original = index.clause_scores(intent.query)
    base_ndcg = ndcg(index.rank(original, 10), intent, facets) if base is None else base
    outcomes = []
    for rewrite in rewrites:
        clause = index.clause_scores(rewrite, operator=merge.operator)
        merged = original + merge.weight * clause
        gain = ndcg(index.rank(merged, 10), intent, facets) - base_ndcg
        own = on_intent_share(index.rank(index.clause_scores(rewrite), 10), intent, facets)
        added = int(((clause > 0) & (original <= 0)).sum())
        outcomes.append(Outcome(rewrite, gain, own, added))
    return base_ndcg, outcomes


def list_gain(index: LexicalIndex, facets: CatalogFacets, intent: Intent, rewrites: Sequence[str],
              merge: MergeSettings = MergeSettings()) -> float:
    """nDCG@10 change when every rewrite of a list is merged at once (the GRPO reward's core)."""
    original = index.clause_scores(intent.query)
    base_ndcg = ndcg(index.rank(original, 10), intent, facets)
    if not rewrites:
        return 0.0
    merged = original.copy()
    for rewrite in rewrites:
        merged = merged + merge.weight * index.clause_scores(rewrite, operator=merge.operator)
    return ndcg(index.rank(merged, 10), intent, facets) - base_ndcg


@dataclasses.dataclass(frozen=True)
class LabelRule:
    """Thresholds that turn a measured outcome into a tag (documented in the data card)."""

    helps: float = 0.03
    """A gain at least this large helps."""
    hurts: float = -0.01
    """A gain at or below this hurts."""
    on_intent: float = 0.3
    """An own top 10 with at least this share of the asked-for kind of product is on intent."""

    def tag(self, outcome: Outcome) -> Tag:
        """helps and on-intent -> exact; harmless and on-intent -> substitute; harmless or lucky but
        off-intent -> weak; hurts -> irrelevant."""
        if outcome.gain <= self.hurts:
            return TAG_BY_NAME["irrelevant"]
        if outcome.own >= self.on_intent:
            return TAG_BY_NAME["exact"] if outcome.gain >= self.helps else TAG_BY_NAME["substitute"]
        return TAG_BY_NAME["weak"]

    def describe(self) -> str:
        return (f"gain <= {self.hurts} -> irrelevant (hurts); own on-intent share >= {self.on_intent} and gain >= {self.helps} "
                f"-> exact (helps); own >= {self.on_intent} and {self.hurts} < gain < {self.helps} -> substitute "
                f"(neutral-positive); own < {self.on_intent} and gain > {self.hurts} -> weak (neutral)")
