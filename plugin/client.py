"""Drop-in for opensearch-py: an ``OpenSearch`` client whose ``search`` and ``msearch`` rewrite.

``RewritingOpenSearch`` *is* an ``opensearchpy.OpenSearch`` (same constructor, same transport, same
namespaced sub-clients); only ``search`` and ``msearch`` pass their body through the engine before
calling the parent. Every other API is inherited untouched. Its twin for ``AsyncOpenSearch`` is
``qrw.plugin.async_client.AsyncRewritingOpenSearch``; both share the body handling below. Explain:
pass the header ``X-QRW-Explain: true`` (``headers={...}``) or put ``"ext": {"qrw": {"explain": true}}``
in the body; the report is added to the response under ``"qrw"`` (for msearch, in each response).

    from qrw.plugin import RewritingOpenSearch
    client = RewritingOpenSearch(hosts=["http://127.0.0.1:9200"], model=my_model, rules=load_rules("rules.txt"))
    client.search(index="products", body={"query": {"match": {"title": "laptop"}}})

``msearch`` takes what opensearch-py takes: a list (or any iterable, generators included) of header
and body dicts or JSON strings, or NDJSON text/bytes, which is read with OpenSearch's own framing
rules (``qrw.plugin.msearch``) so that only the body lines that change are replaced.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from opensearchpy import OpenSearch
from opensearchpy.exceptions import OpenSearchException

from qrw.plugin import lograte
from qrw.plugin import msearch as msearch_framing
from qrw.plugin import recovery
from qrw.plugin.config import PluginConfig
from qrw.plugin.engine import BRANDS_TIMEOUT_S, RespellAsk, RewriteEngine, truthy
from qrw.plugin.jsonbody import dumps, loads_faithful
from qrw.plugin.model import RewriteModel
from qrw.plugin.rules import RuleSet

EXPLAIN_HEADER = "X-QRW-Explain"
REWRITE_HEADER = "X-QRW-Rewrite"
"""``headers={"X-QRW-Rewrite": "off"}`` sends a search as written, as the proxy does: no rewrites, no respelling,
no zero-hit retry; the header itself is not sent to OpenSearch."""
log = logging.getLogger("qrw.plugin")


def _index_text(index: Any) -> str | None:
    if index is None:
        return None
    if isinstance(index, (list, tuple)):
        return ",".join(str(i) for i in index)
    return str(index)


def _explain_header(headers: Mapping | None) -> bool:
    if not headers:
        return False
    return any(key.lower() == EXPLAIN_HEADER.lower() and truthy(value) for key, value in headers.items())


def as_written(headers: Mapping | None) -> tuple[bool, Mapping | None]:
    """(whether ``X-QRW-Rewrite`` asks for the search as written, the headers without it)."""
    if not headers:
        return False, headers
    value = next((v for k, v in headers.items() if k.lower() == REWRITE_HEADER.lower()), None)
    if value is None:
        return False, headers
    rest = {k: v for k, v in headers.items() if k.lower() != REWRITE_HEADER.lower()}
    return not truthy(value), rest or None


def materialise(body: Any) -> Any:
    """A one-shot iterable (generator, iterator) as a list, so it can be read and still be sent."""
    if body is None or isinstance(body, (str, bytes, bytearray, Mapping, list, tuple)):
        return body
    if isinstance(body, Iterable):
        return list(body)
    return body


def parse_msearch(body: Any) -> list[tuple[Any, Any]] | None:
    """An msearch body (list of dicts/JSON strings, or NDJSON str/bytes) as (header, body) pairs; None if unparseable.

    Headers that are not objects stay as they are (OpenSearch reads them as empty headers).
    """
    try:
        if isinstance(body, (bytes, bytearray)):
            body = body.decode("utf-8")
        if isinstance(body, str):
            items: list[Any] = [line for line in body.split("\n") if line.strip()]
        elif isinstance(body, (list, tuple)):
            items = list(body)
        else:
            return None
        items = [json.loads(item) if isinstance(item, (str, bytes)) else item for item in items]
    except (ValueError, UnicodeDecodeError):
        return None
    if len(items) % 2:
        return None
    return [(items[i], items[i + 1]) for i in range(0, len(items), 2)]


# ---------------------------------------------------------------------------------------------
# Body handling shared by the sync and async clients
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Prepared:
    """A request body ready to send, and what to add to the response afterwards."""

    body: Any
    reports: list[dict | None]
    single: bool


def search_parse(body: Any) -> Any:
    """A text body parsed as OpenSearch reads it (``jsonbody.loads_faithful``); an unreadable one, or any other body, as it is."""
    if isinstance(body, (str, bytes, bytearray)):
        try:
            return loads_faithful(body)
        except ValueError:
            return body
    return body


def respell_asks(engine: RewriteEngine, body: Any, index: Any, *, multi: bool = False) -> list[RespellAsk]:
    """The suggest requests (``qrw.plugin.respell``) to send before rewriting a parsed ``search`` body (or, with
    ``multi``, an ``msearch`` body); empty when the engine remembers every answer or respelling is off."""
    if not engine.config.respell.enabled:
        return []
    target = _index_text(index)
    if not multi:
        ask = engine.respell_ask(body, target)
        return [ask] if ask is not None else []
    asks = []
    for header, item in parse_msearch(body) or []:
        ask = engine.respell_ask(item, msearch_framing.target_index(header, target) if isinstance(header, Mapping) else target)
        if ask is not None:
            asks.append(ask)
    return asks


def prepare_search(engine: RewriteEngine, body: Any, index: Any, headers: Any, parsed: Any = None) -> Prepared:
    """``parsed``: ``body`` already parsed by the caller (a text body is then not read twice)."""
    if parsed is None:
        parsed = search_parse(body)
    new_body, report = engine.rewrite_body(parsed, index=_index_text(index), explain=_explain_header(headers))
    if new_body is parsed and parsed is not body:
        new_body = body  # unparseable text body: send the caller's bytes as they were
    elif parsed is not body and new_body == parsed:
        new_body = body  # a text body that was not changed goes out as the caller wrote it
    elif parsed is not body:
        new_body = dumps(new_body).decode("utf-8")
    return Prepared(new_body, [report], True)


def _prepare_ndjson(engine: RewriteEngine, body: str | bytes, index: Any, explain: bool) -> Prepared | None:
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
    if raw and not raw.endswith(b"\n"):
        raw += b"\n"  # opensearch-py adds it before sending
    items = msearch_framing.split(raw)
    if items is None:
        return None
    replacements: dict[int, bytes] = {}
    reports: list[dict | None] = []
    for i, item in enumerate(items):
        line = raw[item.body_start:item.body_end]
        try:
            parsed = loads_faithful(line)
        except ValueError:
            reports.append(None)
            continue
        new_body, report = engine.rewrite_body(parsed, index=msearch_framing.target_index(item.header, _index_text(index)),
                                               explain=explain)
        if new_body != parsed:
            replacements[i] = dumps(new_body)
        reports.append(report)
    joined = msearch_framing.join(raw, items, replacements)
    return Prepared(joined.decode("utf-8", "surrogatepass") if isinstance(body, str) else joined, reports, False)


def prepare_msearch(engine: RewriteEngine, body: Any, index: Any, headers: Any) -> Prepared:
    explain = _explain_header(headers)
    if isinstance(body, (str, bytes, bytearray)):
        prepared = _prepare_ndjson(engine, body, index, explain)
        return prepared if prepared is not None else Prepared(body, [], False)
    pairs = parse_msearch(body)
    if pairs is None:
        return Prepared(body, [], False)
    rewritten, reports = engine.rewrite_msearch(pairs, index=_index_text(index), explain=explain)
    return Prepared([item for pair in rewritten for item in pair], reports, False)


def finish(prepared: Prepared, response: Any) -> Any:
    """The response with the explain reports added (if any were asked for)."""
    if prepared.single:
        report = prepared.reports[0] if prepared.reports else None
        if report is not None and isinstance(response, dict):
            return {**response, "qrw": report}
        return response
    if any(r is not None for r in prepared.reports) and isinstance(response, dict) and isinstance(response.get("responses"), list):
        responses = [
            {**item, "qrw": report} if report is not None and isinstance(item, dict) else item
            for item, report in zip(response["responses"], prepared.reports)
        ]
        return {**response, "responses": responses}
    return response


def _scroll(params: Any, kwargs: Mapping) -> bool:
    return bool(kwargs.get("scroll") or (params.get("scroll") if isinstance(params, Mapping) else None))


def search_retry(engine: RewriteEngine, prepared: Prepared, response: Any, index: Any, params: Any,
                 kwargs: Mapping) -> dict | None:
    """The zero-hit recovery body for a ``search`` that found nothing (``qrw.plugin.recovery``), or None: not for
    scrolls, and only where rewriting is on (``proxy.rewrite_indices``)."""
    if not engine.config.recovery.zero_hits or not recovery.found_nothing(response):
        return None  # the usual answer, decided from the response alone: nothing parsed or matched
    if _scroll(params, kwargs) or not engine.enabled_for(_index_text(index)):
        return None
    return recovery.retry_body(search_parse(prepared.body), response, engine.config.recovery)


def take_search(engine: RewriteEngine, prepared: Prepared, first: Any, second: Any) -> Any:
    """The retry's answer when it found something, else the first (empty) one; the explain report notes the retry."""
    found = isinstance(second, Mapping) and not recovery.found_nothing(second) and isinstance(second.get("hits"), Mapping)
    recovery.note(prepared.reports[0] if prepared.reports else None, second if found else None, engine.config.recovery)
    return second if found else first


def msearch_retries(engine: RewriteEngine, prepared: Prepared, response: Any, index: Any, params: Any,
                    kwargs: Mapping) -> tuple[list, list]:
    """(retries, the msearch body sending them) for the items of an ``msearch`` that found nothing."""
    answers = response.get("responses") if isinstance(response, Mapping) else None
    if (not engine.config.recovery.zero_hits or not isinstance(answers, list)
            or not any(recovery.found_nothing(answer) for answer in answers)):
        return [], []  # no empty item: the body is not read again
    pairs = parse_msearch(prepared.body) if not _scroll(params, kwargs) else None
    if pairs is None:
        return [], []
    default = _index_text(index)
    pairs = [(header, body if engine.enabled_for(msearch_framing.target_index(header if isinstance(header, Mapping) else {},
                                                                               default)) else None)
             for header, body in pairs]
    retries = recovery.msearch_retries(pairs, answers, engine.config.recovery)
    return retries, [line for _, header, body in retries for line in (header, body)]


def take_msearch(engine: RewriteEngine, prepared: Prepared, first: Any, retries: list, second: Any) -> Any:
    """``first`` with each recovered item's answer in place of its empty one."""
    responses = list(first["responses"])
    answers = second.get("responses") if isinstance(second, Mapping) else None
    reports = prepared.reports if len(prepared.reports) == len(responses) else None
    recovery.splice(responses, retries, answers, reports, engine.config.recovery)
    return {**first, "responses": responses}


def needs_model(engine: RewriteEngine, prepared_input: Any, index: Any = None) -> bool:
    """Whether preparing this body (searched on ``index``) may wait for the model (the async client then runs it
    in a thread)."""
    if engine.source.model is None:
        return False
    if isinstance(prepared_input, Mapping):
        return engine.needs_model(prepared_input, _index_text(index))
    return True


def make_engine(engine: RewriteEngine | None, config: PluginConfig | None, model: RewriteModel | None,
                rules: RuleSet | None) -> RewriteEngine:
    lograte.install()
    return engine if engine is not None else RewriteEngine(config, model, rules)


class RewritingOpenSearch(OpenSearch):
    """An ``OpenSearch`` client that rewrites ``search`` and ``msearch`` through a ``RewriteEngine``."""

    def __init__(
        self,
        hosts: Any = None,
        *,
        engine: RewriteEngine | None = None,
        config: PluginConfig | None = None,
        model: RewriteModel | None = None,
        rules: RuleSet | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(hosts, **kwargs)
        self.qrw = make_engine(engine, config, model, rules)

    def _read_brands(self, index: Any, headers: Any) -> None:
        """Before the first search, read the brand guard's brands from the index (``RewriteEngine.brands_ask``); a
        failure is logged, the guard keeps its configured brands and the request is tried again later."""
        body = self.qrw.brands_ask()
        if body is None:
            return
        try:
            answer = super().search(body=body, index=index, headers=headers, request_timeout=BRANDS_TIMEOUT_S)
        except OpenSearchException as exc:
            log.warning("brand guard: could not read brands from %s: %s", self.qrw.config.guards.brands_field, exc)
            return
        log.info("brand guard: %d brands (%s)", self.qrw.add_brands_from(answer), self.qrw.config.guards.brands_field)

    def _respell(self, asks: list[RespellAsk], headers: Any) -> None:
        """Ask the index for each pending respelling; the engine keeps the answers. A failure costs only the respelling."""
        timeout = self.qrw.config.respell.timeout_ms / 1000.0
        for ask in asks:
            try:
                answer = super().search(body=ask.body, index=ask.index, headers=headers, request_timeout=timeout)
            except OpenSearchException as exc:  # a 400 (e.g. no such field) turns respelling off for that index a while
                self.qrw.respell_answer(ask, getattr(exc, "info", None), refused=getattr(exc, "status_code", None) == 400)
                continue
            held = None
            check = self.qrw.respell_check(ask, answer)  # a multi-shard answer's corrections, confirmed index-wide
            if check is not None:
                try:
                    held = super().search(body=check.body, index=check.index, headers=headers, request_timeout=timeout)
                except OpenSearchException:
                    held = None  # unconfirmed: no respelling this time
            self.qrw.respell_answer(ask, answer, held=held)

    def search(self, body: Any = None, index: Any = None, params: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        plain, headers = as_written(headers)
        if plain:
            return super().search(body=body, index=index, params=params, headers=headers, **kwargs)
        self._read_brands(index, headers)
        parsed = search_parse(body)
        self._respell(respell_asks(self.qrw, parsed, index), headers)
        prepared = prepare_search(self.qrw, body, index, headers, parsed)
        response = super().search(body=prepared.body, index=index, params=params, headers=headers, **kwargs)
        retry = search_retry(self.qrw, prepared, response, index, params, kwargs)
        if retry is not None:
            try:
                second = super().search(body=retry, index=index, params=params, headers=headers, **kwargs)
            except OpenSearchException:
                second = None  # the empty answer stands
            response = take_search(self.qrw, prepared, response, second)
        return finish(prepared, response)

    def msearch(self, body: Any = None, index: Any = None, params: Any = None, headers: Any = None, **kwargs: Any) -> Any:
        plain, headers = as_written(headers)
        if plain:
            return super().msearch(body=body, index=index, params=params, headers=headers, **kwargs)
        self._read_brands(index, headers)
        body = materialise(body)
        self._respell(respell_asks(self.qrw, body, index, multi=True), headers)
        prepared = prepare_msearch(self.qrw, body, index, headers)
        response = super().msearch(body=prepared.body, index=index, params=params, headers=headers, **kwargs)
        retries, retry_body = msearch_retries(self.qrw, prepared, response, index, params, kwargs)
        if retries:
            try:
                second = super().msearch(body=retry_body, index=index, params=params, headers=headers, **kwargs)
            except OpenSearchException:
                second = None
            response = take_msearch(self.qrw, prepared, response, retries, second)
        return finish(prepared, response)

    def close(self) -> None:
        self.qrw.close()
        super().close()

