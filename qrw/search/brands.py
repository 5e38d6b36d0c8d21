"""The catalog's brand vocabulary, read from the index through the profile's brand field.

Why: the plugin's brand guard drops a rewrite that loses a brand the query names ("hp toner" ->
"canon toner"), but only for brands it knows. The profile says which field holds the brand; the
index knows every value. A terms aggregation on the field's exact form (a ``keyword`` field or
sub-field, such as the ``.raw`` that ``qrw index`` adds) lists them; an index without one is
sampled instead.
"""

from __future__ import annotations

from collections import Counter

from opensearchpy import OpenSearch

from qrw.search.connect import translate_errors
from qrw.search.profile import IndexProfile

MAX_BRANDS = 10_000
SAMPLE_DOCS = 10_000


def _exact_field(mappings: dict, field: str) -> str | None:
    """``field`` itself when it is a keyword, else a keyword sub-field of it, else None."""
    for concrete in mappings.values():
        node = concrete.get("mappings", {})
        for part in field.split("."):
            node = node.get("properties", {}).get(part, {})
        if node.get("type") == "keyword":
            return field
        for name, sub in (node.get("fields") or {}).items():
            if sub.get("type") == "keyword":
                return f"{field}.{name}"
    return None


def exact_brand_field(client: OpenSearch, profile: IndexProfile, index: str | None = None, *, url: str = "") -> str | None:
    """The keyword form of the profile's brand field in ``index`` (``supplier.raw`` for Icecat), or None."""
    if not profile.brand_field:
        return None
    index = index or profile.index
    with translate_errors(url, index=index):
        return _exact_field(client.indices.get_mapping(index=index), profile.brand_field)


def brand_list(client: OpenSearch, profile: IndexProfile, index: str | None = None, *, url: str = "",
               min_documents: int = 1) -> list[str]:
    """Every brand value in the index (at most ``MAX_BRANDS``, most frequent first); [] without a brand field."""
    if not profile.brand_field:
        return []
    index = index or profile.index
    with translate_errors(url, index=index):
        exact = _exact_field(client.indices.get_mapping(index=index), profile.brand_field)
        if exact is not None:
            body = {"size": 0, "aggs": {"brands": {"terms": {"field": exact, "size": MAX_BRANDS, "min_doc_count": min_documents}}}}
            buckets = client.search(index=index, body=body)["aggregations"]["brands"]["buckets"]
            return [str(b["key"]).strip() for b in buckets if str(b["key"]).strip()]
        hits = client.search(index=index, body={"size": SAMPLE_DOCS, "_source": [profile.brand_field]})["hits"]["hits"]
    counts = Counter(profile.item(hit.get("_source") or {}, hit["_id"]).brand for hit in hits)
    return [brand for brand, n in counts.most_common(MAX_BRANDS) if brand and n >= min_documents]
