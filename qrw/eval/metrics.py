"""Retrieval metrics as pure functions of a ranked list of doc ids and the query's graded judgments.

Definitions (documented in the README, tested on hand-computed cases):

* nDCG@k: gain ``2^grade - 1``, discount ``log2(rank + 1)``; unjudged documents have grade 0; the
  ideal ranking is all judged documents of the query sorted by grade. 0 when no document of the
  query has a grade above 0.
* condensed nDCG@k: the same after removing unjudged documents from the ranking (Sakai 2007), so
  a system that retrieves new, unjudged products is not punished for the judges' blind spot.
* recall@k: share of the query's relevant documents (grade >= 2) in the top k; None when the query
  has no relevant document (such queries are left out of the recall average).
* precision@k: relevant (grade >= 2) documents in the top k divided by k.
* judged@k: judged documents in the top k divided by k.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

RELEVANT_GRADE = 2


def _dcg(grades: Sequence[int]) -> float:
    return sum((2**grade - 1) / math.log2(rank + 2) for rank, grade in enumerate(grades))


def ndcg_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    ideal = _dcg(sorted(judged.values(), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return _dcg([judged.get(doc, 0) for doc in ranked[:k]]) / ideal


def condensed_ndcg_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    return ndcg_at_k([doc for doc in ranked if doc in judged], judged, k)


def recall_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int = 100) -> float | None:
    relevant = {doc for doc, grade in judged.items() if grade >= RELEVANT_GRADE}
    if not relevant:
        return None
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def precision_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    return sum(1 for doc in ranked[:k] if judged.get(doc, 0) >= RELEVANT_GRADE) / k


def judged_at_k(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10) -> float:
    return sum(1 for doc in ranked[:k] if doc in judged) / k


def query_metrics(ranked: Sequence[str], judged: Mapping[str, int]) -> dict[str, float | None]:
    """Every metric the harness reports, for one query."""
    return {
        "ndcg@10": ndcg_at_k(ranked, judged, 10),
        "condensed_ndcg@10": condensed_ndcg_at_k(ranked, judged, 10),
        "recall@100": recall_at_k(ranked, judged, 100),
        "precision@10": precision_at_k(ranked, judged, 10),
        "judged@10": judged_at_k(ranked, judged, 10),
    }


METRIC_NAMES = ("ndcg@10", "condensed_ndcg@10", "recall@100", "precision@10", "judged@10")


def mean_metrics(per_query: Sequence[Mapping[str, float | None]]) -> dict[str, float]:
    """Average each metric over the queries where it is defined."""
    means = {}
    for name in METRIC_NAMES:
        values = [row[name] for row in per_query if row.get(name) is not None]
        means[name] = sum(values) / len(values) if values else 0.0
    return means
