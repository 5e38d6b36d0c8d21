"""The product index: mapping, bulk indexing with a progress bar, idempotent re-indexing.

Design:

* Text analysis comes from ``qrw.search.baseline`` (the one place that also builds the baseline
  query): each text field is ``standard``-analysed with a stemmed ``.stem`` sub-field, and all of
  them are copied into the stemmed catch-all field ``all_text``. Stemming needs the analysis-common
  module, which ``qrw.search.node`` installs. Vocabulary the stemmer cannot bridge ("laptop" vs
  "notebook") is what the rewriter is for.
* Idempotent by construction: the concrete index is named after a fingerprint of the mapping and
  the documents (``products-<12 hex>``) and reached through the alias (``products``). Re-running
  with the same catalog finds the complete index and does nothing; a changed catalog or mapping
  builds a new index, moves the alias atomically, and deletes the old one. Searches never see a
  half-built index.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from opensearchpy import OpenSearch, helpers
from tqdm import tqdm

from qrw.errors import SearchBackendError
from qrw.search.baseline import text_mapping
from qrw.search.catalog import Product
from qrw.search.connect import translate_errors

TEXT_FIELDS = ("title", "name", "supplier", "short_description", "attributes")

_ANALYSIS, _TEXT_PROPERTIES = text_mapping(TEXT_FIELDS, keyword_fields=("name", "supplier"))

MAPPING: dict = {
    "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s", "analysis": _ANALYSIS},
    "mappings": {
        "dynamic": "strict",
        "properties": {
            "id": {"type": "keyword"},
            **_TEXT_PROPERTIES,
            "price": {"type": "float"},
            "ean": {"type": "keyword"},
            "date_released": {"type": "date"},
            "image_url": {"type": "keyword", "index": False},
        },
    },
}


def fingerprint(documents: Sequence[dict]) -> str:
    """A short hash of the mapping and every document, naming the concrete index."""
    digest = hashlib.sha1(json.dumps(MAPPING, sort_keys=True).encode())
    for doc in documents:
        digest.update(json.dumps(doc, sort_keys=True).encode())
    return digest.hexdigest()[:12]


def _alias_targets(client: OpenSearch, alias: str) -> list[str]:
    if not client.indices.exists_alias(name=alias):
        return []
    return sorted(client.indices.get_alias(name=alias))


def index_catalog(
    client: OpenSearch,
    products: Sequence[Product],
    alias: str = "products",
    *,
    batch_size: int = 1000,
    progress: bool = True,
    url: str = "",
) -> dict:
    """Make ``alias`` point at a complete index of ``products``; return what was done."""
    documents = [product.to_document() for product in products]
    concrete = f"{alias}-{fingerprint(documents)}"
    with translate_errors(url):
        if client.indices.exists(index=alias) and not client.indices.exists_alias(name=alias):
            raise SearchBackendError(
                f"{alias!r} is a concrete index, not an alias; qrw manages {alias!r} as an alias",
                hint=f"delete the index {alias!r} or choose another --index name",
            )
        if concrete in _alias_targets(client, alias):
            count = client.count(index=concrete)["count"]
            if count == len(documents):
                return {"alias": alias, "index": concrete, "documents": count, "action": "unchanged"}
        if client.indices.exists(index=concrete):
            client.indices.delete(index=concrete)
        client.indices.create(index=concrete, body=MAPPING)
        actions = ({"_index": concrete, "_id": doc["id"], "_source": doc} for doc in documents)
        bar = tqdm(total=len(documents), desc=f"indexing {concrete}", unit="doc", disable=not progress)
        failures = []
        for ok, item in helpers.streaming_bulk(
            client, actions, chunk_size=batch_size, raise_on_error=False, request_timeout=120
        ):
            bar.update(1)
            if not ok:
                failures.append(item)
        bar.close()
        if failures:
            client.indices.delete(index=concrete)
            raise SearchBackendError(f"{len(failures)} documents failed to index; first: {failures[0]}")
        client.indices.refresh(index=concrete)
        old = _alias_targets(client, alias)
        moves = [{"remove": {"index": name, "alias": alias}} for name in old]
        moves.append({"add": {"index": concrete, "alias": alias}})
        client.indices.update_aliases(body={"actions": moves})
        for name in old:
            if name != concrete:
                client.indices.delete(index=name)
        count = client.count(index=alias)["count"]
    return {"alias": alias, "index": concrete, "documents": count, "action": "built"}
