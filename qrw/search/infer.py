"""``qrw profile infer``: draft an index profile from a live index (its mapping and a sample of its
documents), or from a JSON Lines catalog that ``qrw index --from`` will build.

Why it must work without hand edits: a search team points qrw at an index someone else built, with
field names of its own. The draft must already run a sensible baseline query there, so every
decision below uses only what the index itself shows:

* **fields**: the mapping's leaves (object fields become dotted paths), with their sub-fields;
* **id field**: a field whose value equals the hit's ``_id`` in (almost) every sampled document,
  else ``_id`` itself (judgments always name documents by ``_id``);
* **roles**: names first (``brand``/``maker``/``manufacturer``/``vendor``/``supplier`` for the brand,
  ``category``/``department``/``type``/... for categories, ``title``/``name`` for the title), then the
  sample: a title is a short text present in every document with mostly distinct values; a brand is a
  short, low-cardinality value that usually appears in the title; attributes are the remaining short,
  low-cardinality strings; long texts are descriptions;
* **baseline**: on an index built by ``qrw index`` (it has the stemmed ``all_text`` catch-all), and for
  a JSON Lines catalog, the project's default form (catch-all + brand ``.stem`` at 0.5, most_fields). Elsewhere a
  ``cross_fields`` ``multi_match`` with equal weights over the text fields, each through its stemmed
  sub-field when the mapping has one: on the Icecat development queries that was the strongest form
  without a catch-all field, and boosting the title lowered nDCG@10 in every variant measured
  (``shared/notes/opensearch-modules.md``). Weights are not tuned: there are no judgments here.
"""

from __future__ import annotations

import dataclasses
import re
import statistics
from collections.abc import Iterator, Mapping
from typing import Any

from opensearchpy import OpenSearch

from qrw.errors import InputDataError
from qrw.search.baseline import CATCH_ALL, STEM_SUFFIX, BaselineSpec
from qrw.search.connect import translate_errors
from qrw.search.profile import METADATA_ID, IndexProfile, default_form

TITLE_NAMES = (re.compile(r"title$", re.I), re.compile(r"(^|_|\.)name$", re.I), re.compile(r"(label|heading)$", re.I))
"""Name patterns of a title field, strongest first ('product_title' > 'product_name' > 'label')."""
BRAND_NAMES = re.compile(r"(brand|maker|manufacturer|vendor|supplier|make|producer)", re.I)
CATEGORY_NAMES = re.compile(r"(categor|department|dept|product_?type|^type$|_type$|class|section|family|kind|genre|group)", re.I)
ID_NAMES = re.compile(r"(^|_)(id|sku|code|ean|gtin|upc|isbn|mpn)$", re.I)
STEMMED_ANALYZERS = re.compile(r"(english|stem|porter|snowball|kstem|light_)", re.I)
LONG_TEXT_WORDS = 20.0
SHORT_VALUE_WORDS = 4.0


@dataclasses.dataclass
class FieldInfo:
    """One mapped leaf field and what the sample shows about it."""

    path: str
    type: str
    mapping: dict
    subfields: dict[str, dict]
    coverage: float = 0.0
    mean_words: float = 0.0
    distinct: float = 0.0
    in_title: float = 0.0
    equals_id: float = 0.0

    @property
    def is_text(self) -> bool:
        return self.type == "text"

    @property
    def is_string(self) -> bool:
        return self.type in ("text", "keyword", "match_only_text", "search_as_you_type")

    def search_name(self) -> str:
        """The field to query: a stemmed sub-field when the mapping has one (the project's ``.stem``, else by analyzer)."""
        if STEM_SUFFIX.lstrip(".") in self.subfields:
            return self.path + STEM_SUFFIX
        for name, sub in self.subfields.items():
            if sub.get("type") == "text" and STEMMED_ANALYZERS.search(str(sub.get("analyzer", ""))):
                return f"{self.path}.{name}"
        return self.path


def _leaves(properties: Mapping[str, Any], prefix: str = "") -> Iterator[FieldInfo]:
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec and spec.get("type") in (None, "object"):
            yield from _leaves(spec["properties"], path + ".")
            continue
        yield FieldInfo(path, spec.get("type", "object"), spec, dict(spec.get("fields") or {}))


def _value(source: Mapping[str, Any], path: str) -> Any:
    node: Any = source
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, Mapping) and path in node:  # a dotted key stored as is
            return node[path]
        else:
            return None
    return node


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    return str(value).strip()


def _measure(fields: list[FieldInfo], hits: list[dict], title: FieldInfo | None = None) -> None:
    n = len(hits)
    for info in fields:
        values = [_text(_value(hit.get("_source") or {}, info.path)) for hit in hits]
        present = [v for v in values if v]
        info.coverage = len(present) / n if n else 0.0
        info.mean_words = statistics.fmean(len(v.split()) for v in present) if present else 0.0
        info.distinct = len({v.casefold() for v in present}) / len(present) if present else 0.0
        info.equals_id = sum(1 for v, hit in zip(values, hits) if v and v == str(hit["_id"])) / n if n else 0.0
        if title is not None and title is not info:
            titles = [_text(_value(hit.get("_source") or {}, title.path)).casefold() for hit in hits]
            pairs = [(v.casefold(), t) for v, t in zip(values, titles) if v]
            info.in_title = sum(1 for v, t in pairs if v in t) / len(pairs) if pairs else 0.0


def _pick_title(texts: list[FieldInfo]) -> FieldInfo:
    candidates = [f for f in texts if f.coverage >= 0.8 and 0 < f.mean_words <= LONG_TEXT_WORDS] or texts

    def name_rank(info: FieldInfo) -> int:
        return next((len(TITLE_NAMES) - i for i, pattern in enumerate(TITLE_NAMES) if pattern.search(info.path)), 0)

    # a title is read by people: several words (not a bare model code), mostly distinct, in every document
    return max(candidates, key=lambda f: (f.mean_words >= 2, name_rank(f), f.distinct >= 0.8, f.coverage >= 0.95,
                                          f.distinct, -abs(f.mean_words - 6)))


def _short_labels(fields: list[FieldInfo], exclude: set[str]) -> list[FieldInfo]:
    """String fields with short values that repeat across documents (brand, category, attribute material)."""
    return [f for f in fields if f.is_string and f.path not in exclude and f.coverage >= 0.2
            and 0 < f.mean_words <= SHORT_VALUE_WORDS and f.distinct <= 0.5]


def infer_profile(client: OpenSearch, index: str, *, sample_size: int = 500, url: str = "", name: str | None = None) -> IndexProfile:
    """A profile for ``index`` from its mapping and its first ``sample_size`` documents."""
    with translate_errors(url, index=index):
        mappings = client.indices.get_mapping(index=index)
        response = client.search(index=index, body={"size": sample_size, "query": {"match_all": {}},
                                                    "sort": ["_doc"]})
    properties: dict = {}
    for concrete in sorted(mappings):
        properties.update(mappings[concrete].get("mappings", {}).get("properties", {}))
    fields = [f for f in _leaves(properties) if f.path != CATCH_ALL]
    hits = response["hits"]["hits"]
    if not hits:
        raise InputDataError(f"index {index!r} has no documents to learn a profile from")
    if not any(f.is_text for f in fields):
        raise InputDataError(f"index {index!r} has no text field: a baseline query needs at least one",
                             hint="map the product names as type 'text'")
    return _draft(fields, hits, name=name or index, index=index, qrw_layout=CATCH_ALL in properties)


def infer_from_documents(documents: list[dict], *, index: str, name: str | None = None) -> IndexProfile:
    """A profile for a catalog that ``qrw index`` will build (``--from FILE.jsonl``), from its documents.

    Every string field is text there; the id field is one whose values are all present, distinct and
    one token (an id-like name preferred); the baseline is the project's default form over the
    catch-all field that ``qrw index`` adds.
    """
    if not documents:
        raise InputDataError("no documents to learn a profile from")
    fields = [FieldInfo(path, kind, {"type": kind}, {}) for path, kind in _json_fields(documents).items()]
    hits = [{"_id": None, "_source": doc} for doc in documents]
    _measure(fields, hits)
    unique = [f for f in fields if f.coverage == 1.0 and f.distinct == 1.0 and f.mean_words == 1.0
              and f.type in ("keyword", "long")]
    id_field = max(unique, key=lambda f: (bool(ID_NAMES.search(f.path)), f.type == "keyword")) if unique else None
    if id_field is None:
        raise InputDataError("no field holds a distinct id in every document",
                             hint="add one (e.g. 'id' or 'sku'): judgments name documents by it")
    for info in fields:
        if info.type == "keyword" and info is not id_field:
            info.type = "text"  # qrw index analyses every string field
    for hit in hits:
        hit["_id"] = _text(hit["_source"].get(id_field.path))
    return _draft(fields, hits, name=name or index, index=index, qrw_layout=True)


def _json_fields(documents: list[dict]) -> dict[str, str]:
    """Top-level field -> mapping type, from the JSON values (strings first seen as keyword)."""
    kinds: dict[str, str] = {}
    for doc in documents:
        for key, value in doc.items():
            items = value if isinstance(value, list) else [value]
            for item in items:
                if item is None or isinstance(item, (dict, list)):
                    continue
                kind = ("boolean" if isinstance(item, bool) else "long" if isinstance(item, int)
                        else "float" if isinstance(item, float) else "keyword")
                previous = kinds.get(key)
                if previous is None or (previous == "long" and kind == "float"):
                    kinds[key] = kind
                elif previous != kind and {previous, kind} != {"long", "float"}:
                    kinds[key] = "keyword"
    return kinds


def _draft(fields: list[FieldInfo], hits: list[dict], *, name: str, index: str, qrw_layout: bool) -> IndexProfile:
    """Roles and baseline from measured fields (see the module docstring)."""
    texts = [f for f in fields if f.is_text]
    _measure(fields, hits)
    title = _pick_title(texts)
    _measure(fields, hits, title)

    id_candidates = [f for f in fields if f.equals_id >= 0.99]
    id_field = max(id_candidates, key=lambda f: bool(ID_NAMES.search(f.path))).path if id_candidates else METADATA_ID
    labels = _short_labels(fields, {title.path, id_field})
    brand = _pick_brand(labels)
    taken = {title.path, id_field} | ({brand.path} if brand else set())
    categories = [f for f in labels if f.path not in taken and CATEGORY_NAMES.search(f.path)]
    taken |= {f.path for f in categories}
    attributes = [f for f in labels if f.path not in taken]
    roles = {title.path, *(f.path for f in labels)}
    # text fields: every analysed field, the title first, long descriptions last
    text_fields = [title] + sorted((f for f in texts if f is not title), key=lambda f: (f.mean_words > LONG_TEXT_WORDS, f.path))
    text_fields += [f for f in labels if not f.is_text and f.path not in {t.path for t in text_fields}]
    other = {f.path: _plain_mapping(f) for f in fields
             if f.path not in roles and f.path not in {t.path for t in text_fields} and f.path != id_field
             and f.type not in ("object", "nested")}
    if qrw_layout:
        baseline = default_form(brand.path if brand else None)
    else:
        baseline = _foreign_baseline(texts)
    return IndexProfile(
        name=name,
        index=index,
        id_field=id_field,
        title_field=title.path,
        text_fields=tuple(f.path for f in text_fields),
        brand_field=brand.path if brand else None,
        category_fields=tuple(f.path for f in categories),
        attribute_fields=tuple(f.path for f in attributes),
        other_fields=other,
        baseline=baseline,
    )


def _pick_brand(labels: list[FieldInfo]) -> FieldInfo | None:
    named = [f for f in labels if BRAND_NAMES.search(f.path)]
    if named:
        return max(named, key=lambda f: (f.coverage, f.in_title))
    in_title = [f for f in labels if f.in_title >= 0.5 and f.mean_words <= 3 and not CATEGORY_NAMES.search(f.path)]
    return max(in_title, key=lambda f: (f.in_title, f.coverage)) if in_title else None


def _plain_mapping(info: FieldInfo) -> dict:
    keep = {k: v for k, v in info.mapping.items() if k in ("type", "format", "index", "ignore_above", "scaling_factor")}
    return keep or {"type": info.type}


def _foreign_baseline(texts: list[FieldInfo]) -> BaselineSpec:
    search_fields = tuple(dict.fromkeys(f.search_name() for f in texts))
    if len(search_fields) == 1:
        return BaselineSpec(name="inferred_match", fields=search_fields,
                            description="inferred: the index's one text field")
    return BaselineSpec(
        name="inferred_cross_fields", fields=search_fields, type="cross_fields",
        description="inferred: cross_fields over every text field (stemmed sub-fields where mapped), equal weights")
