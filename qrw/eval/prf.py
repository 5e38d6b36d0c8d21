"""A classic expansion baseline: pseudo-relevance feedback from the top 10 titles (RM3-like, simplified).

Why it is here: a learned rewriter should beat what a search engineer gets for free. This builder
searches the original query, counts terms in the titles of the top ``feedback_docs`` hits (weighted
by rank), drops the query's own terms and stop words, and OR-merges the ``expansion_terms`` most
frequent terms as one down-weighted ``multi_match`` clause. Parameters are textbook defaults, not tuned.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

from opensearchpy import OpenSearch

from qrw.search.baseline import DEFAULT_BASELINE, BaselineSpec

_TOKEN = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset(
    "a an and are as at be by for from in is it of on or the to with w pc pcs cm mm x".split()
)


@dataclasses.dataclass
class PrfQueryBuilder:
    client: OpenSearch
    index: str
    feedback_docs: int = 10
    expansion_terms: int = 5
    expansion_weight: float = 0.3
    baseline: BaselineSpec = DEFAULT_BASELINE
    name: str = "prf"

    def expansion(self, query: str) -> list[str]:
        body = self.baseline.build(query)
        # Fetch more than needed and break score ties by id, so the feedback set is deterministic.
        body.update({"size": self.feedback_docs * 5, "_source": ["title"]})
        hits = self.client.search(index=self.index, body=body)["hits"]["hits"]
        hits = sorted(hits, key=lambda hit: (-(hit.get("_score") or 0.0), hit["_id"]))[: self.feedback_docs]
        query_terms = set(_TOKEN.findall(query.lower()))
        counts: Counter[str] = Counter()
        for rank, hit in enumerate(hits):
            weight = 1.0 / (rank + 1)
            for term in set(_TOKEN.findall(str(hit.get("_source", {}).get("title", "")).lower())):
                if term not in query_terms and term not in STOP_WORDS and len(term) > 1 and not term.isdigit():
                    counts[term] += weight
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))  # ties by term: no hash order
        return [term for term, _ in ranked[: self.expansion_terms]]

    def build(self, query: str) -> dict:
        original = self.baseline.clause(query, name="qrw:original")
        terms = self.expansion(query)
        if not terms:
            return {"query": original}
        expansion = self.baseline.clause(" ".join(terms), boost=self.expansion_weight, name="prf:expansion")
        return {"query": {"bool": {"should": [original, expansion], "minimum_should_match": 1}}}
