"""Producing runs: judged queries -> ranked doc ids from OpenSearch, through a pluggable query builder.

Producing a run (talking to OpenSearch) is kept apart from scoring it (``metrics``), as in BEIR and
pyserini. A query builder turns query text into a search body; the baseline is a ``multi_match``,
the plugin supplies builders that OR-merge rewrites.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Protocol

from opensearchpy import OpenSearch
from tqdm import tqdm

from qrw.errors import SearchBackendError
from qrw.search.connect import translate_errors

Run = dict[str, list[str]]


class QueryBuilder(Protocol):
    """Turns one query text into an OpenSearch search body (without size, which the runner sets)."""

    name: str

    def build(self, query: str) -> dict: ...


# The baseline fields and boosts. Fixed a priori (title carries the product type and model, name is
# the model code, supplier the brand; descriptions and attributes add recall), NOT tuned on the
# judged queries.
BASELINE_FIELDS: tuple[str, ...] = ("title^3", "name^2", "supplier^2", "short_description", "attributes")


@dataclasses.dataclass(frozen=True)
class BaselineQueryBuilder:
    """``multi_match`` of type ``best_fields`` (tie_breaker 0.3) over ``BASELINE_FIELDS``."""

    fields: tuple[str, ...] = BASELINE_FIELDS
    tie_breaker: float = 0.3
    name: str = "original"

    def build(self, query: str) -> dict:
        return {
            "query": {
                "multi_match": {
                    "query": query,
                    "fields": list(self.fields),
                    "type": "best_fields",
                    "tie_breaker": self.tie_breaker,
                }
            }
        }


def _ranked_ids(response: Mapping) -> list[str]:
    hits = response["hits"]["hits"]
    # Deterministic ties: sort by (-score, id), whatever order the shard returned equal scores in.
    ordered = sorted(hits, key=lambda hit: (-(hit.get("_score") or 0.0), hit["_id"]))
    return [hit["_id"] for hit in ordered]


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
    """Search every query (msearch in batches) and return the top ``depth`` doc ids per query."""
    run: Run = {}
    with translate_errors(url, index=index):
        if not client.indices.exists(index=index):
            raise client_missing_index(index, url)
        bar = tqdm(total=len(queries), desc=f"searching ({builder.name})", unit="q", disable=not progress)
        for start in range(0, len(queries), batch_size):
            batch = queries[start : start + batch_size]
            lines: list[dict] = []
            for query in batch:
                body = dict(builder.build(query))
                body.update({"size": depth, "_source": False})
                lines.extend([{"index": index}, body])
            responses = client.msearch(body=lines)["responses"]
            for query, response in zip(batch, responses):
                if "error" in response:
                    raise SearchBackendError(f"search for {query!r} failed: {response['error']}")
                run[query] = _ranked_ids(response)
            bar.update(len(batch))
        bar.close()
    return run


def client_missing_index(index: str, url: str) -> Exception:
    from qrw.errors import IndexMissingError

    return IndexMissingError(
        f"index {index!r} does not exist on {url or 'the cluster'}",
        hint="run `qrw index` first, or pass --index with an existing index or alias",
    )
