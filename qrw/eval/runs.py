"""Producing runs: judged queries -> ranked doc ids from OpenSearch, through a pluggable query builder.

Producing a run (talking to OpenSearch) is kept apart from scoring it (``metrics``), as in BEIR and
pyserini. A query builder turns query text into a search body; the baseline is a ``multi_match``,
the plugin supplies builders that OR-merge rewrites. The baseline builder is
``qrw.search.baseline.DEFAULT_BASELINE`` (one module builds it for every caller).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from opensearchpy import OpenSearch

from qrw.search.connect import translate_errors
from qrw.search.runner import search_many

Run = dict[str, list[str]]


class QueryBuilder(Protocol):
    """Turns one query text into an OpenSearch search body (without size, which the runner sets)."""

    name: str

    def build(self, query: str) -> dict: ...


def produce_run(
    client: OpenSearch,
    index: str,
    queries: Sequence[str],
    builder: QueryBuilder,
    *,
    depth: int = 100,
    batch_size: int = 20,
    url: str = "",
    progress: bool = False,
) -> Run:
    """Search every query (``qrw.search.runner``) and return the top ``depth`` doc ids per query."""
    with translate_errors(url, index=index):
        if not client.indices.exists(index=index):
            raise client_missing_index(index, url)
    bodies = {query: builder.build(query) for query in queries}
    rankings = search_many(client, index, bodies, depth=depth, batch_size=batch_size, url=url, progress=progress,
                           desc=f"searching ({builder.name})")
    return {query: rankings[query].ids for query in queries}


def client_missing_index(index: str, url: str) -> Exception:
    from qrw.errors import IndexMissingError

    return IndexMissingError(
        f"index {index!r} does not exist on {url or 'the cluster'}",
        hint="run `qrw index` first, or pass --index with an existing index or alias",
    )
