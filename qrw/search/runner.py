"""The one search path for offline work: many bodies -> rankings with provenance, via ``msearch``.

Why one module: evaluation, baseline selection, training-data labels, rewards and calibration all
rank documents for many query bodies. If each did its own ``msearch`` loop, they would break score
ties differently or count hits differently, and a figure in one report would not match another.
Here ties are broken by ``(-score, _id)`` (deterministic whatever order a shard returns equal scores
in), the total hit count is exact, and ``matched_queries`` is kept so a report can say which clause
(the original query or a rewrite) found each document. The client may point at OpenSearch or at the
rewriting proxy (same REST API): then each ranking also carries the proxy's explain report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence

from opensearchpy import OpenSearch
from tqdm import tqdm

from qrw.errors import SearchBackendError
from qrw.search.connect import translate_errors


@dataclasses.dataclass(frozen=True)
class Ranking:
    """One body's result: ranked ids, their scores, the named clauses each matched, the total hits."""

    ids: list[str]
    scores: list[float]
    matched: dict[str, list[str]]
    total: int
    sources: dict[str, dict] = dataclasses.field(default_factory=dict)
    """``_source`` per id, when fields were asked for (``source=``)."""
    explain: dict | None = None
    """The rewriting proxy's report (``qrw`` in its response) when the search went through it with explain on."""


def _ranking(response: Mapping) -> Ranking:
    hits = sorted(response["hits"]["hits"], key=lambda h: (-(h.get("_score") or 0.0), h["_id"]))
    matched = {}
    for hit in hits:
        names = hit.get("matched_queries") or []
        matched[hit["_id"]] = list(names)  # a dict (scores per name) or a list: keep the names
    total = response["hits"].get("total", 0)
    if isinstance(total, Mapping):
        total = total.get("value", 0)
    sources = {h["_id"]: h["_source"] for h in hits if isinstance(h.get("_source"), Mapping)}
    return Ranking([h["_id"] for h in hits], [float(h.get("_score") or 0.0) for h in hits], matched, int(total),
                   sources, response.get("qrw"))


def search_many(
    client: OpenSearch,
    index: str,
    bodies: Mapping[Hashable, dict],
    *,
    depth: int = 100,
    batch_size: int = 50,
    url: str = "",
    progress: bool = False,
    desc: str = "searching",
    source: Sequence[str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[Hashable, Ranking]:
    """Search every body (``size`` = ``depth``, exact totals) and return its ``Ranking``.

    ``source`` names the ``_source`` fields to return (none by default); ``headers`` go with each
    request (e.g. ``X-QRW-Explain: true`` towards the proxy).
    """
    keys = list(bodies)
    out: dict[Hashable, Ranking] = {}
    bar = tqdm(total=len(keys), desc=desc, unit="q", disable=not progress)
    with translate_errors(url, index=index):
        for start in range(0, len(keys), batch_size):
            batch = keys[start : start + batch_size]
            lines: list[dict] = []
            for key in batch:
                lines += [{"index": index}, {**bodies[key], "size": depth, "_source": list(source) if source else False,
                                             "track_total_hits": True}]
            answer = client.msearch(body=lines, headers=dict(headers)) if headers else client.msearch(body=lines)
            for key, response in zip(batch, answer["responses"]):
                if "error" in response:
                    raise SearchBackendError(f"search {key!r} failed: {response['error']}")
                out[key] = _ranking(response)
            bar.update(len(batch))
    bar.close()
    return out


def require_fields(client: OpenSearch, index: str, fields: Sequence[str], *, what: str, url: str = "") -> None:
    """Raise ``SearchBackendError`` naming every query field (``'title.stem^2'`` form) that ``index`` lacks.

    Why: OpenSearch answers a ``multi_match`` over a field an index does not map with no error, just
    fewer matches. An index built by an older qrw (before ``all_text.join``) or for another profile
    would then be evaluated against a weaker baseline than the one named in the report: a silent wrong
    answer. Patterns (``title*``) are left to OpenSearch.
    """
    paths = sorted({f.split("^", 1)[0] for f in fields if "*" not in f})
    if not paths:
        return
    with translate_errors(url, index):
        response = client.indices.get_field_mapping(index=index, fields=",".join(paths))
    for concrete, body in response.items():
        mapped = set((body.get("mappings") or {}).keys())
        missing = [p for p in paths if p not in mapped]
        if missing:
            raise SearchBackendError(
                f"index {concrete!r} (searched as {index!r}) has no field {', '.join(missing)}, which {what} searches",
                hint="rebuild it with `qrw index` (the alias moves atomically), or use a profile whose baseline "
                     "names only fields of this index (`qrw profile infer --index ...`)")
