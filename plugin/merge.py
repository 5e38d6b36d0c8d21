"""Query merge: a caller's search body + weighted rewrites -> the same body with OR-merged rewrites.

Pure and JSON in/out: takes and returns plain dicts, never mutates its input, does no I/O.

What it does:

* ``find_text_query`` walks ``body["query"]`` (the root, ``bool.must`` / ``bool.should``, and the
  scoring child of ``function_score``, ``script_score``, ``boosting.positive``, ``dis_max``) for the
  first *text* clause: ``match``, ``multi_match``, ``combined_fields``, ``simple_query_string`` or
  ``query_string``. Filters (``bool.filter``, ``bool.must_not``, ``constant_score``) are never
  touched: rewriting a filter would change which documents are allowed, not how they are found;
  neither is a clause named ``qrw:baseline:...`` (``COMPANION_PREFIX``: a baseline's fuzzy copy).
* ``merge_rewrites`` replaces every text clause carrying that same text by::

      {"bool": {"should": [<original, _name qrw:original>,
                           <rewrite 0, boost w0, _name qrw:rewrite:0>, ...],
                "minimum_should_match": 1, <the caller's boost and _name, if any>}}

  so each hit's ``matched_queries`` shows which clause found it. Everything else in the body
  (filters, sort, aggregations, from/size, highlight, _source, rescore, ...) is copied unchanged.
* Which rewrites may *add* documents (``MERGE_MODES``). ``expand``: every rewrite, as in the bool
  above. ``rerank``: none; each rewrite clause is grouped under the original clause as a filter
  (``{"bool": {"should": [<rewrites>], "minimum_should_match": 1, "filter": [<original, unnamed>]}}``),
  so it only reorders what the user's own words match: the hit count is the original's, and a query
  with no results keeps none. ``confident``: only the rewrites marked ``expands`` (the gate's
  full-weight decisions, merchandisers' rules and respellings of the query: ``plugin/widening.py``)
  may add documents; the others are grouped as in ``rerank``, with the filter widened to the
  original *or* an expanding rewrite, so they reorder the whole result set (the documents an index
  respelling found too) and still add nothing to it. Why: on the judged training queries the rewrite candidates reach the same best case
  either way, while wrong rewrites hurt less when they cannot bring in documents the query never
  asked for (``benchmarks/merge_modes.py``); yet a confident ``beamer`` -> ``projector`` must still be
  able to find the projectors that never say "beamer".
* A rewrite enters only as the ``query`` string of a structured clause. The rewrite of a
  ``query_string`` / ``simple_query_string`` becomes a ``multi_match`` over the same fields: rewrite
  text is never spliced into query-string syntax, so ``title:x OR *`` in a rewrite is matched as words.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

TEXT_KINDS = ("match", "multi_match", "combined_fields", "simple_query_string", "query_string")
COMPANION_PREFIX = "qrw:baseline:"
"""A text clause whose ``_name`` starts with this is part of how the baseline scores the query (its
low-weight fuzzy copy, ``BaselineSpec.fuzzy_boost``), not the query itself: it is left as sent, so
rewrites are merged once, beside the clause that carries the user's words."""
SYNTAX_KINDS = ("simple_query_string", "query_string")
ORIGINAL_NAME = "qrw:original"
MERGE_MODES = ("expand", "confident", "rerank")
REWRITE_PREFIX = "qrw:rewrite:"
EXT_KEY = "qrw"

Path = tuple[Any, ...]


def rewrite_name(index: int) -> str:
    return f"{REWRITE_PREFIX}{index}"


@dataclasses.dataclass(frozen=True)
class TextQuery:
    """The first text clause found: where it is (keys from the body's root), its kind and its text."""

    path: Path
    kind: str
    text: str


@dataclasses.dataclass(frozen=True)
class WeightedRewrite:
    text: str
    weight: float
    expands: bool = True
    """Whether, under ``confident``, this rewrite may add documents the original does not match."""


# ---------------------------------------------------------------------------------------------
# Finding
# ---------------------------------------------------------------------------------------------


def _clause_text(clause: Any) -> tuple[str, str] | None:
    """(kind, text) if ``clause`` is a text clause with a non-empty string query."""
    if not isinstance(clause, Mapping) or len(clause) != 1:
        return None
    kind, spec = next(iter(clause.items()))
    if kind not in TEXT_KINDS or not isinstance(spec, Mapping):
        return None
    if kind == "match":
        fields = [key for key in spec if key not in ("boost", "_name")]
        if len(fields) != 1:
            return None
        value = spec[fields[0]]
        text = value.get("query") if isinstance(value, Mapping) else value
    else:
        text = spec.get("query")
    if not isinstance(text, str) or not text.strip():
        return None
    return kind, text


def _scoring_children(clause: Any, path: Path) -> Iterator[tuple[Path, Any]]:
    """Depth-first: the clause itself, then the children that contribute to scoring."""
    yield path, clause
    if not isinstance(clause, Mapping) or len(clause) != 1:
        return
    kind, spec = next(iter(clause.items()))
    if not isinstance(spec, Mapping):
        return
    if kind == "bool":
        for occur in ("must", "should"):
            children = spec.get(occur)
            if isinstance(children, Mapping):
                yield from _scoring_children(children, (*path, kind, occur))
            elif isinstance(children, list):
                for i, child in enumerate(children):
                    yield from _scoring_children(child, (*path, kind, occur, i))
    elif kind in ("function_score", "script_score") and "query" in spec:
        yield from _scoring_children(spec["query"], (*path, kind, "query"))
    elif kind == "boosting" and "positive" in spec:
        yield from _scoring_children(spec["positive"], (*path, kind, "positive"))
    elif kind == "dis_max" and isinstance(spec.get("queries"), list):
        for i, child in enumerate(spec["queries"]):
            yield from _scoring_children(child, (*path, kind, "queries", i))


def _is_companion(clause: Mapping) -> bool:
    kind, spec = next(iter(clause.items()))
    if kind == "match":
        spec = next((v for k, v in spec.items() if k not in ("boost", "_name")), {})
    name = spec.get("_name") if isinstance(spec, Mapping) else None
    return isinstance(name, str) and name.startswith(COMPANION_PREFIX)


def _text_clauses(body: Mapping) -> Iterator[tuple[Path, str, str]]:
    if not isinstance(body, Mapping) or "query" not in body:
        return
    for path, clause in _scoring_children(body["query"], ("query",)):
        found = _clause_text(clause)
        if found is not None and not _is_companion(clause):
            yield path, found[0], found[1]


def find_text_query(body: Mapping) -> TextQuery | None:
    """The first text clause of ``body``'s query (in scoring position), or None."""
    for path, kind, text in _text_clauses(body):
        return TextQuery(path, kind, text)
    return None


# ---------------------------------------------------------------------------------------------
# Merging
# ---------------------------------------------------------------------------------------------


def _without(spec: Mapping, *keys: str) -> dict:
    return {key: value for key, value in spec.items() if key not in keys}


def _with_operator(options: Mapping, operator: str | None) -> dict:
    """``options`` with the rewrite operator applied (``None``: unchanged). ``and`` replaces any minimum_should_match."""
    if operator is None:
        return dict(options)
    return {**_without(options, "operator", "minimum_should_match"), "operator": operator}


def _rewrite_clause(kind: str, spec: Mapping, text: str, weight: float, name: str, operator: str | None = None) -> dict:
    if kind == "match":
        (field,) = [key for key in spec if key not in ("boost", "_name")]
        value = spec[field]
        options = _without(value, "boost", "_name") if isinstance(value, Mapping) else {}
        return {"match": {field: {**_with_operator(options, operator), "query": text, "boost": weight, "_name": name}}}
    if kind in SYNTAX_KINDS:
        clause: dict[str, Any] = {"query": text}
        if isinstance(spec.get("fields"), list) and spec["fields"]:
            clause["fields"] = list(spec["fields"])
        elif isinstance(spec.get("default_field"), str):
            clause["fields"] = [spec["default_field"]]
        default = spec.get("default_operator")
        if isinstance(default, str) and default.lower() in ("and", "or"):
            clause["operator"] = default.lower()
        return {"multi_match": {**_with_operator(clause, operator), "boost": weight, "_name": name}}
    options = _without(spec, "boost", "_name")
    if kind in ("multi_match", "combined_fields"):
        options = _with_operator(options, operator)
    return {kind: {**options, "query": text, "boost": weight, "_name": name}}


def _original_clause(kind: str, spec: Mapping) -> dict:
    if kind == "match":
        (field,) = [key for key in spec if key not in ("boost", "_name")]
        value = spec[field]
        options = _without(value, "boost", "_name") if isinstance(value, Mapping) else {"query": value}
        return {"match": {field: {**options, "_name": ORIGINAL_NAME}}}
    return {kind: {**_without(spec, "boost", "_name"), "_name": ORIGINAL_NAME}}


def _original_filter(kind: str, spec: Mapping) -> dict:
    """The original clause as ``rerank``'s filter: unnamed (its hits are named by the scoring copy)."""
    kind, named = next(iter(_original_clause(kind, spec).items()))
    if kind == "match":
        field, options = next(iter(named.items()))
        return {"match": {field: _without(options, "_name")}}
    return {kind: _without(named, "_name")}


def _outer_options(kind: str, spec: Mapping) -> dict:
    """The caller's boost and _name move from the text clause to the wrapping bool."""
    source = spec
    if kind == "match":
        (field,) = [key for key in spec if key not in ("boost", "_name")]
        source = spec[field] if isinstance(spec[field], Mapping) else {}
    return {key: source[key] for key in ("boost", "_name") if key in source}


def merged_clause(clause: Mapping, rewrites: Sequence[WeightedRewrite], rewrite_operator: str | None = None,
                  mode: str = "expand") -> dict:
    """One text clause -> the bool/should of the original and its rewrites (those that may not add
    documents grouped under the original as a filter)."""
    kind, spec = next(iter(clause.items()))
    should = [_original_clause(kind, spec)]
    restricted, matching = [], [_original_filter(kind, spec)]
    for i, rw in enumerate(rewrites):
        rewrite = _rewrite_clause(kind, spec, rw.text, rw.weight, rewrite_name(i), rewrite_operator)
        adds = mode == "expand" or (mode == "confident" and rw.expands)
        (should if adds else restricted).append(rewrite)
        if adds:
            matching.append(_as_filter(rewrite))
    if restricted:
        # the result set is what the user's clause or an expanding rewrite (a respelling, a confident rewrite)
        # matches: a restricted rewrite reorders all of it and adds nothing to it
        scope = matching[0] if len(matching) == 1 else {"bool": {"should": matching, "minimum_should_match": 1}}
        should.append({"bool": {"should": restricted, "minimum_should_match": 1, "filter": [scope]}})
    return {"bool": {"should": should, "minimum_should_match": 1, **_outer_options(kind, spec)}}


def _as_filter(rewrite: Mapping) -> dict:
    """A rewrite clause as part of a filter: unnamed and unboosted (its hits are named by the scoring copy)."""
    kind, spec = next(iter(rewrite.items()))
    if kind == "match":
        field, options = next(iter(spec.items()))
        return {"match": {field: _without(options, "_name", "boost")}}
    return {kind: _without(spec, "_name", "boost")}


def _replace(container: Any, path: Path, make: Any) -> Any:
    """A copy of ``container`` with the value at ``path`` replaced by ``make(old)``; only the path is copied."""
    if not path:
        return make(container)
    key, rest = path[0], path[1:]
    if isinstance(container, list):
        copy = list(container)
    else:
        copy = dict(container)
    copy[key] = _replace(container[key], rest, make)
    return copy


def merge_rewrites(body: Mapping, rewrites: Sequence[WeightedRewrite], rewrite_operator: str | None = None,
                   mode: str = "expand") -> dict:
    """``body`` with its text clauses OR-merged with ``rewrites`` (weight 0 ones left out).

    Every text clause whose text equals the first one's is merged (a ``bool.should`` of ``match``
    clauses over several fields stays one query with the same rewrites). With no usable rewrite,
    or no text clause, a shallow copy of ``body`` comes back unchanged. ``rewrite_operator``
    (``and`` / ``or``; None or ``same``: as the original clause) sets how each rewrite clause's terms
    combine: ``and`` adds only documents holding every rewrite term, so rewrites cannot flood the
    result set with documents matching one generic word. ``mode`` (``MERGE_MODES``): which rewrites
    may add documents the original does not match (see the module docstring).
    """
    if mode not in MERGE_MODES:
        raise ValueError(f"merge mode {mode!r} is not one of {', '.join(MERGE_MODES)}")
    if rewrite_operator == "same":
        rewrite_operator = None
    kept = [rw for rw in rewrites if rw.weight > 0 and rw.text.strip()]
    target = find_text_query(body)
    result = dict(body)
    if target is None or not kept:
        return result
    paths = [path for path, _, text in _text_clauses(body) if text == target.text]
    for path in paths:
        result = _replace(result, path, lambda clause: merged_clause(clause, kept, rewrite_operator, mode))
    return result


def strip_ext(body: Mapping) -> tuple[dict, dict]:
    """(``body`` without ``ext.qrw``, the ``ext.qrw`` options). An emptied ``ext`` is removed.

    OpenSearch rejects unknown ``ext`` sections, so our options must never be forwarded.
    """
    result = dict(body)
    ext = body.get("ext")
    if not isinstance(ext, Mapping) or EXT_KEY not in ext:
        return result, {}
    options = ext[EXT_KEY]
    rest = {key: value for key, value in ext.items() if key != EXT_KEY}
    if rest:
        result["ext"] = rest
    else:
        del result["ext"]
    return result, dict(options) if isinstance(options, Mapping) else {"explain": bool(options)}
