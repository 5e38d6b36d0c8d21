"""Retrieval feedback for data building and rewards: the baseline query on the live index, batched.

Why a small class: data building searches tens of thousands of candidate rewrites, and every GRPO
step searches a group of completions twice (relevance and simulated conversion). ``Searcher`` sends
``msearch`` batches with the baseline ``multi_match`` (``qrw.search.baseline.DEFAULT_BASELINE``,
the same one evaluation uses) and remembers results, so a rewrite is searched once per run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from opensearchpy import OpenSearch

from qrw.eval.runs import client_missing_index
from qrw.search.baseline import DEFAULT_BASELINE
from qrw.search.connect import translate_errors
from qrw.search.runner import search_many


class Searcher:
    """Top-``depth`` doc ids for query texts from ``index``; results are cached per text."""

    def __init__(self, client: OpenSearch, index: str = "products", *, depth: int = 10, batch_size: int = 100,
                 url: str = "", cache_size: int = 200_000) -> None:
        self.client = client
        self.index = index
        self.depth = depth
        self.batch_size = batch_size
        self.url = url
        self.builder = DEFAULT_BASELINE
        self._cache: dict[str, list[str]] = {}
        self._cache_size = cache_size
        with translate_errors(url, index=index):
            if not client.indices.exists(index=index):
                raise client_missing_index(index, url)

    @classmethod
    def connect(cls, url: str, index: str = "products", **kwargs) -> Searcher:
        from qrw.search.connect import open_client

        return cls(open_client(url), index, url=url, **kwargs)

    def search(self, texts: Iterable[str]) -> dict[str, list[str]]:
        """``{text: ranked ids}`` for every distinct text (``qrw.search.runner``: ties broken by id)."""
        wanted = list(dict.fromkeys(t for t in texts))
        missing = [t for t in wanted if t not in self._cache]
        for start in range(0, len(missing), self.batch_size):
            batch = missing[start : start + self.batch_size]
            rankings = search_many(self.client, self.index, {text: self.builder.build(text) for text in batch},
                                   depth=self.depth, batch_size=self.batch_size, url=self.url)
            for text in batch:
                if len(self._cache) >= self._cache_size:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[text] = rankings[text].ids
        return {t: self._cache[t] for t in wanted}


def judged_grade(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10, *, min_judged: int = 3) -> float | None:
    """Mean judged grade of the judged documents in the top ``k``; None if fewer than ``min_judged``.

    Used to *label* data: only judged hits are evidence. (The evaluation metric, rewrite relevance
    rate, is stricter and counts unjudged hits as 0.)
    """
    grades = [judged[doc] for doc in ranked[:k] if doc in judged]
    if len(grades) < min_judged:
        return None
    return sum(grades) / len(grades)


def share_relevant(ranked: Sequence[str], judged: Mapping[str, int], k: int = 10, *, min_judged: int = 3) -> float | None:
    """Share of judged top-``k`` documents with grade >= 2; None if fewer than ``min_judged`` judged."""
    grades = [judged[doc] for doc in ranked[:k] if doc in judged]
    if len(grades) < min_judged:
        return None
    return sum(g >= 2 for g in grades) / len(grades)
