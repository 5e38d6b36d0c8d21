"""Zero-hit recovery: when a search finds nothing, search once more with its text clauses made fuzzy.

Why: a misspelled word (``keyboaard``) matches nothing, and an empty page is the worst answer a shop
can give. The model respells many typos, but the gate drops a respelling it is unsure of, and some
typos it does not know. OpenSearch's own ``fuzziness`` recovers most of them, but it costs precision
on every correctly spelled query (``docs/eval/headroom.md`` §13: ``fuzziness: AUTO`` in the baseline
costs 20 % nDCG@10 there). So the fuzzy search is sent only after the search that was sent (the
user's query with its served rewrites) came back empty: a query with results never pays for it, in
quality or in latency, and the user's query is still what is searched.

What changes in the retry: under the body's ``query``, every ``match`` and ``multi_match`` clause (the
user's and the rewrites') gets ``fuzziness`` (``RecoveryConfig.fuzziness``), unless it already has
one or its type cannot take one (``cross_fields``, ``phrase``, ``phrase_prefix``, ``bool_prefix``).
Fields matching ``RecoveryConfig.skip_fields`` (by default the joined-pairs sub-fields ``*.join``,
where fuzziness matches far too much, §14) are left out of a ``multi_match``, and a ``match`` on
such a field stays exact. Filters, aggregations, sorting and everything else stay as they were, so
recovered results still obey the caller's filters.

When: the first response is a success with no hits and a total of 0, and the request asked for the
first page of hits (``size`` absent or above 0, ``from`` absent or 0, no ``search_after``, not a
scroll), on an index where rewriting is on (``proxy.rewrite_indices``; the callers check). If the
retry fails or also finds nothing, the first response is the answer.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from qrw.plugin.config import RecoveryConfig

NO_FUZZINESS_TYPES = frozenset({"cross_fields", "phrase", "phrase_prefix", "bool_prefix"})


def _skipped(field: str, patterns: tuple[str, ...]) -> bool:
    name = field.split("^", 1)[0]
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _fuzzy_options(config: RecoveryConfig) -> dict:
    """What the retry adds to a text clause: the fuzziness, and the prefix a match must keep when one is set."""
    return {"fuzziness": config.fuzziness, **({"prefix_length": config.prefix_length} if config.prefix_length else {})}


def _fuzzy_match(clause: Any, config: RecoveryConfig) -> Any:
    """A ``match`` clause's body ({field: text or options}) with fuzziness added where it can be."""
    if not isinstance(clause, Mapping) or len(clause) != 1:
        return clause
    (field, spec), = clause.items()
    if _skipped(field, config.skip_fields):
        return clause
    if isinstance(spec, Mapping):
        if "fuzziness" in spec or "query" not in spec:
            return clause
        return {field: {**spec, **_fuzzy_options(config)}}
    if isinstance(spec, str):
        return {field: {"query": spec, **_fuzzy_options(config)}}
    return clause


def _fuzzy_multi_match(clause: Any, config: RecoveryConfig) -> Any:
    if not isinstance(clause, Mapping) or "fuzziness" in clause or "query" not in clause:
        return clause
    if clause.get("type", "best_fields") in NO_FUZZINESS_TYPES:
        return clause
    fields = clause.get("fields")
    if fields is None:
        return {**clause, **_fuzzy_options(config)}
    if isinstance(fields, str):
        fields = [fields]
    if not isinstance(fields, list):
        return clause
    kept = [f for f in fields if not (isinstance(f, str) and _skipped(f, config.skip_fields))]
    if not kept:
        return clause
    return {**clause, "fields": kept, **_fuzzy_options(config)}


def _walk(node: Any, config: RecoveryConfig) -> Any:
    if isinstance(node, list):
        return [_walk(item, config) for item in node]
    if not isinstance(node, Mapping):
        return node
    out = {}
    for key, value in node.items():
        if key == "match":
            out[key] = _fuzzy_match(value, config)
        elif key == "multi_match":
            out[key] = _fuzzy_multi_match(value, config)
        else:
            out[key] = _walk(value, config)
    return out


def fuzzy_body(body: Any, config: RecoveryConfig) -> dict | None:
    """The retry body: ``body`` with its text clauses made fuzzy; None when no clause could change."""
    if not isinstance(body, Mapping) or not isinstance(body.get("query"), Mapping):
        return None
    query = _walk(body["query"], config)
    if query == body["query"]:
        return None
    return {**body, "query": query}


def asks_for_first_page(body: Any) -> bool:
    """Whether the request wants hits from the start: a count-only, later-page or search_after request does not."""
    if not isinstance(body, Mapping):
        return False
    size, start = body.get("size"), body.get("from")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size <= 0):
        return False
    if start is not None and (not isinstance(start, int) or isinstance(start, bool) or start != 0):
        return False
    return "search_after" not in body and "scroll_id" not in body and "pit" not in body


def found_nothing(response: Any) -> bool:
    """A successful search response with no hits and a total (if counted) of 0."""
    if not isinstance(response, Mapping) or "error" in response:
        return False
    hits = response.get("hits")
    if not isinstance(hits, Mapping) or hits.get("hits") != []:
        return False
    total = hits.get("total")
    if isinstance(total, Mapping):
        return total.get("value") == 0
    return total in (None, 0)


def retry_body(sent: Any, response: Any, config: RecoveryConfig) -> dict | None:
    """The body to search again, or None: only for an empty answer to a first-page request with a text clause."""
    if not config.zero_hits or not found_nothing(response) or not asks_for_first_page(sent):
        return None
    return fuzzy_body(sent, config)


def note(report: dict | None, recovered: Any, config: RecoveryConfig) -> None:
    """Record the retry in an explain report: how many hits the fuzzy search found (0: the empty answer stood)."""
    if report is None:
        return
    total = 0
    if isinstance(recovered, Mapping) and isinstance(recovered.get("hits"), Mapping):
        count = recovered["hits"].get("total")
        total = count.get("value", 0) if isinstance(count, Mapping) else (count or len(recovered["hits"].get("hits") or []))
    report["recovery"] = {"reason": "no hits", "fuzziness": config.fuzziness, "hits": int(total)}


def msearch_retries(pairs: list[tuple[Mapping, Any]], responses: Any,
                    config: RecoveryConfig) -> list[tuple[int, Mapping, dict]]:
    """(position, header, retry body) for each ``_msearch`` item (header, body as sent) whose answer was empty."""
    if not config.zero_hits or not isinstance(responses, list) or len(responses) != len(pairs):
        return []
    retries = []
    for position, ((header, body), answer) in enumerate(zip(pairs, responses)):
        retry = retry_body(body, answer, config)
        if retry is not None:
            retries.append((position, header, retry))
    return retries


def splice(responses: list, retries: list[tuple[int, Mapping, dict]], answers: Any, reports: list | None,
           config: RecoveryConfig) -> int:
    """Put each retry's answer in place of the empty one it retried, when it found something; note every retry
    in its explain report. Returns how many were recovered."""
    if not isinstance(answers, list) or len(answers) != len(retries):
        return 0
    recovered = 0
    for (position, _header, _body), answer in zip(retries, answers):
        good = isinstance(answer, Mapping) and isinstance(answer.get("hits"), Mapping) and not found_nothing(answer) \
            and "error" not in answer
        if reports is not None and position < len(reports):
            note(reports[position], answer if good else None, config)
        if good:
            responses[position] = answer
            recovered += 1
    return recovered
