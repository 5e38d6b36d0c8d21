"""Keeping a rewritten search what the client asked for: the last step of the chain and a merge wrapper.

Found by sending the same fuzzed bodies through the proxy and straight to OpenSearch:

* a rewrite that analyses to no terms (``_``, ``--``, ``!!``) inside a clause with
  ``zero_terms_query: all`` matches every document (19,406 products instead of 114). The ``terms``
  chain step drops such rewrites (explain shows why), and every rewrite clause gets
  ``zero_terms_query: none``, so a rewrite made only of stop words cannot widen the search either;
* a ``query_string`` rewritten as ``multi_match`` lost ``lenient: true`` (a valid query then fails
  on numeric fields with a 400): ``lenient`` and ``analyzer`` are carried over;
* a numeric or boolean ``_name`` (accepted by ``match``, refused by ``bool``) moved to the wrapping
  ``bool`` gave a 400: it is written there as the string OpenSearch would have read.

``faithful_merge`` is ``merge.merge_rewrites`` followed by these corrections; the plan is for them
to move into ``merge.py`` itself (owned elsewhere), after which this wrapper can go.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from qrw.plugin.chain import Candidate, RequestContext, Rewriter, StepLog
from qrw.plugin.jsonbody import BigNumber
from qrw.plugin.merge import ORIGINAL_NAME, SYNTAX_KINDS, WeightedRewrite, merge_rewrites

CARRIED_TO_MULTI_MATCH = ("lenient", "analyzer")


def has_terms(text: str) -> bool:
    """Whether ``text`` holds a letter or digit: text without one analyses to no terms in any analyser."""
    return any(ch.isalnum() for ch in text)


class _TermsRewriter:
    def __init__(self, step_id: str) -> None:
        self.step_id = step_id

    def rewrite(self, candidates: list[Candidate], step: StepLog) -> list[Candidate]:
        out = []
        for candidate in candidates:
            if candidate.dropped_by is None and not has_terms(candidate.text):
                step.action("drop", candidate.text, reason="no searchable terms")
                candidate = dataclasses.replace(candidate, dropped_by=f"{self.step_id}: no searchable terms")
            out.append(candidate)
        return out


@dataclasses.dataclass
class TermsFactory:
    """Chain step: drops rewrites (model or pinned) that contain no letter or digit."""

    id: str = "terms"

    def create(self, context: RequestContext) -> Rewriter:
        return _TermsRewriter(self.id)


def _name_text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, BigNumber):
        return value.literal
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    return value


def _fix_rewrite(entry: dict, original_kind: str, original_spec: Any) -> dict:
    kind, clause = next(iter(entry.items()))
    clause = dict(clause)
    if kind == "bool":  # the rewrites that may not add documents, grouped under the original (merge modes)
        clause["should"] = [_fix_rewrite(inner, original_kind, original_spec) for inner in clause["should"]]
        clause["filter"] = [_fix_scope(scope, original_kind, original_spec) for scope in clause.get("filter", [])]
    elif kind == "match":
        field, options = next(iter(clause.items()))
        if isinstance(options, Mapping) and "zero_terms_query" in options:
            clause[field] = {**options, "zero_terms_query": "none"}
    else:
        if "zero_terms_query" in clause:
            clause["zero_terms_query"] = "none"
        if original_kind in SYNTAX_KINDS and kind == "multi_match" and isinstance(original_spec, Mapping):
            for key in CARRIED_TO_MULTI_MATCH:
                if key in original_spec and key not in clause:
                    clause[key] = original_spec[key]
    return {kind: clause}


def _fix_scope(scope: dict, original_kind: str, original_spec: Any) -> dict:
    """The filter of the grouped rewrites: the user's clause as it is, or a ``bool`` of it and copies of the
    expanding rewrites, which need the same corrections as the rewrites they copy."""
    if next(iter(scope)) != "bool":
        return scope  # the user's own clause (a text clause is never a bool)
    spec = dict(scope["bool"])
    user_clause, *copies = spec["should"]
    spec["should"] = [user_clause, *(_fix_rewrite(copy, original_kind, original_spec) for copy in copies)]
    return {"bool": spec}


def _fix_wrapper(wrapper: dict) -> dict:
    spec = dict(wrapper["bool"])
    if "_name" in spec:
        spec["_name"] = _name_text(spec["_name"])
    should = list(spec["should"])
    original_kind, original_spec = next(iter(should[0].items()))
    spec["should"] = [should[0], *(_fix_rewrite(entry, original_kind, original_spec) for entry in should[1:])]
    return {"bool": spec}


def _is_wrapper(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1 or "bool" not in value:
        return False
    should = value["bool"].get("should") if isinstance(value["bool"], Mapping) else None
    if not isinstance(should, list) or not should or not isinstance(should[0], Mapping) or len(should[0]) != 1:
        return False
    spec = next(iter(should[0].values()))
    if not isinstance(spec, Mapping):
        return False
    if spec.get("_name") == ORIGINAL_NAME:
        return True
    inner = next(iter(spec.values()), None)  # match: {field: {..., _name}}
    return isinstance(inner, Mapping) and inner.get("_name") == ORIGINAL_NAME


def _fix(value: Any) -> Any:
    if _is_wrapper(value):
        return _fix_wrapper(value)
    if isinstance(value, dict):
        return {k: _fix(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fix(v) for v in value]
    return value


def faithful_merge(body: Mapping, rewrites: Sequence[WeightedRewrite], rewrite_operator: str | None = None,
                   mode: str = "expand") -> dict:
    """``merge_rewrites`` plus the corrections in the module docstring. Never mutates ``body``."""
    kept = [rw for rw in rewrites if has_terms(rw.text)]
    merged = merge_rewrites(body, kept, rewrite_operator, mode)
    if not kept or "query" not in merged:
        return merged
    return {**merged, "query": _fix(merged["query"])}
