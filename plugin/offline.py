"""Offline helpers for calibration: model outputs for many queries, and ranked ids for many bodies.

Kept apart from ``calibrate`` (pure) because these talk to a model and to OpenSearch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opensearchpy import OpenSearch
from tqdm import tqdm

from qrw.errors import SearchBackendError
from qrw.plugin.model import RewriteModel
from qrw.plugin.prompt import TAG_BY_NAME, normalize_text
from qrw.search.connect import translate_errors


def produce_outcomes(model: RewriteModel, queries: Sequence[str], num_rewrites: int, *, batch_size: int = 8,
                     progress: bool = True) -> dict[str, list[tuple[str, dict[str, float]]]]:
    """Per query, the model's rewrites and their tag probabilities (batched calls)."""
    outcomes: dict[str, list[tuple[str, dict[str, float]]]] = {}
    bar = tqdm(total=len(queries), desc=f"rewriting ({getattr(model, 'name', 'model')})", unit="q", disable=not progress)
    for start in range(0, len(queries), batch_size):
        batch = list(queries[start : start + batch_size])
        generated = model.generate(batch, num_rewrites)
        pairs = [(q, r) for q, rewrites in zip(batch, generated) for r in rewrites[:num_rewrites] if normalize_text(r)]
        tags = model.tag(pairs) if pairs else []
        for query in batch:
            outcomes[query] = []
        for (query, rewrite), probs in zip(pairs, tags):
            outcomes[query].append((normalize_text(rewrite), {name: float(probs.get(name, 0.0)) for name in TAG_BY_NAME}))
        bar.update(len(batch))
    bar.close()
    return outcomes


def msearch_ranked(client: OpenSearch, index: str, bodies: Mapping[str, dict], *, depth: int = 20, batch_size: int = 25,
                   url: str = "") -> dict[str, list[str]]:
    """Top ``depth`` doc ids per body, ties broken by id (deterministic, as ``qrw.eval.runs``)."""
    ranked: dict[str, list[str]] = {}
    keys = list(bodies)
    with translate_errors(url, index=index):
        for start in range(0, len(keys), batch_size):
            batch = keys[start : start + batch_size]
            lines: list[dict] = []
            for key in batch:
                lines += [{"index": index}, {**bodies[key], "size": depth, "_source": False}]
            for key, response in zip(batch, client.msearch(body=lines)["responses"]):
                if "error" in response:
                    raise SearchBackendError(f"calibration search failed: {response['error']}")
                hits = sorted(response["hits"]["hits"], key=lambda h: (-(h.get("_score") or 0.0), h["_id"]))
                ranked[key] = [hit["_id"] for hit in hits]
    return ranked
