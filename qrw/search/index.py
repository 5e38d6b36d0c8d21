"""Building a catalog index: the profile's mapping, bulk indexing with a progress bar, idempotent re-indexing.

Design:

* The mapping comes from the index profile (``qrw.search.profile``): nothing here knows a field
  name. Text analysis comes from ``qrw.search.baseline`` (the one place that also builds the
  baseline query): each text field is ``standard``-analysed with a stemmed ``.stem`` sub-field, and
  all of them are copied into the stemmed catch-all field ``all_text``. Stemming needs the
  analysis-common module, which ``qrw.search.node`` installs.
* Documents are indexed with ``_id`` = the profile's id field, so judgments name documents by ``_id``.
* Idempotent by construction: the concrete index is named after a fingerprint of the mapping and
  the documents (``<alias>-<12 hex>``) and reached through the alias. Re-running with the same
  catalog finds the complete index and does nothing; a changed catalog or mapping builds a new
  index, moves the alias atomically, and deletes the old one. Searches never see a half-built index.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from opensearchpy import OpenSearch, helpers
from tqdm import tqdm

from qrw.errors import InputDataError, SearchBackendError
from qrw.search.catalog import Product
from qrw.search.connect import translate_errors
from qrw.search.profile import METADATA_ID, IndexProfile, load_profile

TEXT_FIELDS: tuple[str, ...] = load_profile().searchable_fields
"""The shipped Icecat profile's text fields (what its ``all_text`` catch-all holds). Kept for callers
written before profiles (``trainer/lexical.py``); new code reads ``IndexProfile.searchable_fields``."""


def fingerprint(documents: Sequence[dict], mapping: dict) -> str:
    """A short hash of the mapping and every document, naming the concrete index."""
    digest = hashlib.sha1(json.dumps(mapping, sort_keys=True).encode())
    for doc in documents:
        digest.update(json.dumps(doc, sort_keys=True).encode())
    return digest.hexdigest()[:12]


def _alias_targets(client: OpenSearch, alias: str) -> list[str]:
    if not client.indices.exists_alias(name=alias):
        return []
    return sorted(client.indices.get_alias(name=alias))


def check_documents(documents: Sequence[dict], profile: IndexProfile, source: str = "the catalog") -> None:
    """Every document has an id (unique) and the title field; text fields hold text. Errors name the document."""
    if profile.id_field == METADATA_ID:
        raise InputDataError(f"profile {profile.name!r} names no id field (id_field: _id), so documents cannot be indexed",
                             hint="set id_field to the field that holds each product's id")
    seen: set[str] = set()
    for number, doc in enumerate(documents, start=1):
        doc_id = doc.get(profile.id_field)
        if doc_id in (None, "") or isinstance(doc_id, (dict, list)):
            raise InputDataError(f"{source}: document {number} has no usable {profile.id_field!r} (the id field)")
        if str(doc_id) in seen:
            raise InputDataError(f"{source}: document {number} repeats the id {doc_id!r}")
        seen.add(str(doc_id))
        if doc.get(profile.title_field) in (None, ""):
            raise InputDataError(f"{source}: document {doc_id} has no {profile.title_field!r} (the title field)")
        for name in profile.searchable_fields:
            value = doc.get(name)
            values = value if isinstance(value, list) else [value]
            if any(isinstance(v, (dict, list)) for v in values):
                raise InputDataError(f"{source}: document {doc_id}: text field {name!r} holds an object",
                                     hint="flatten it into one text field per attribute")


def index_documents(
    client: OpenSearch,
    documents: Sequence[dict],
    profile: IndexProfile,
    alias: str | None = None,
    *,
    batch_size: int = 1000,
    progress: bool = True,
    url: str = "",
) -> dict:
    """Make ``alias`` (default: the profile's index) point at a complete index of ``documents``."""
    alias = alias or profile.index
    check_documents(documents, profile)
    mapping = profile.mapping()
    concrete = f"{alias}-{fingerprint(documents, mapping)}"
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
        client.indices.create(index=concrete, body=mapping)
        actions = ({"_index": concrete, "_id": str(doc[profile.id_field]), "_source": doc} for doc in documents)
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


def index_catalog(
    client: OpenSearch,
    products: Sequence[Product],
    alias: str = "products",
    *,
    profile: IndexProfile | None = None,
    batch_size: int = 1000,
    progress: bool = True,
    url: str = "",
) -> dict:
    """Index Icecat ``Product`` records (``Product.to_document``) with the Icecat profile (or ``profile``)."""
    return index_documents(client, [product.to_document() for product in products], profile or load_profile(),
                           alias, batch_size=batch_size, progress=progress, url=url)
