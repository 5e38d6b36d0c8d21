"""A reverse proxy speaking OpenSearch's REST API that rewrites ``_search`` and ``_msearch`` and is
otherwise invisible.

* ``GET|POST [/{index}]/_search`` and ``[/{index}]/_msearch``: the body goes through the engine
  (on the event loop when a fresh cache entry answers, else in a worker thread bounded by the
  server's deadline) and is forwarded; ``ext.qrw`` is always stripped. A body that is not changed is
  forwarded as the client's very bytes; a changed one is serialised again by ``jsonbody.dumps``.
  A gzip/deflate-encoded body is decoded, rewritten and encoded again.
* Every other request passes through: method, target, headers (``Authorization`` included,
  hop-by-hop ones excepted), body (streamed), and back status, raw headers (duplicates and case
  kept, no compression added or removed) and body bytes (streamed).
* Bodies of APIs that carry a query (``_search``, ``_msearch``, ``_count``, ``_explain``,
  ``_validate``, ``_delete_by_query``, ``_update_by_query``, ``_reindex``, aliases) nested deeper than
  ``proxy.max_json_depth`` are refused with an OpenSearch-shaped 400 before they reach a node:
  about 400 nested ``bool`` queries crash OpenSearch 2.19 with a StackOverflowError.
* Several upstream nodes: healthy ones round-robin; idempotent reads move to another node when one
  fails (``upstream.Upstreams``).
* Debug surfaces (``X-QRW-Explain``, ``ext.qrw.explain``, ``/_qrw/stats``, ``/_qrw/metrics``) only for
  the networks or shared secret in ``proxy.debug_*`` (``access.DebugAccess``); ``/_qrw/health`` is
  public and says whether the model is loaded, which nodes answer, and the last error.
* Every error the proxy itself makes is OpenSearch-shaped JSON with the right status
  (``errors.to_response``): 400 depth/unreadable body, 403 debug surface, 413 body too large,
  502 no node reachable, 503 pool exhausted, 504 node timeout, 500 anything unexpected.

This is a plain ASGI app (no framework on the hot path), served by uvicorn with httptools and uvloop
(``serve_config``); the upstream side is ``upstream.py``'s pooled HTTP/1.1 client. Under
``serve_config`` most searches skip ASGI: the server protocol (``http_server``) hands a search whose
body it has read to ``Proxy.search_answer`` and writes the answer itself; the answer, errors and
metrics are the ones the ASGI path gives (``_search_answer`` serves both).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import json
import logging
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import orjson

from qrw.plugin import jsonbody, lograte
from qrw.plugin import msearch as msearch_framing
from qrw.plugin import recovery
from qrw.plugin.access import TOKEN_HEADER, DebugAccess
from qrw.plugin.chain import cache_key
from qrw.plugin.config import ProxyConfig
from qrw.plugin.engine import BRANDS_TIMEOUT_S, RewriteEngine, truthy
from qrw.plugin.errors import BodyTooDeep, BodyTooLarge, BodyUnreadable, Forbidden, NotFound, ProxyError, to_response
from qrw.plugin.metrics import Metrics
from qrw.plugin.upstream import HOP_BY_HOP, StreamBody, Upstreams, UpstreamSettings

log = logging.getLogger("qrw.proxy")

SEARCH_PATH = re.compile(r"^/(?:(?P<index>[^/]+)/)?(?P<api>_search|_msearch)/?$")
EXPLAIN_HEADER = b"x-qrw-explain"
RESPELLING_HEADER = b"x-qrw-respelling"
ZERO_HIT_RETRY_HEADER = b"x-qrw-zero-hit-retry"
REWRITE_MARK = b'"_name":"qrw:rewrite:'
"""Present in a forwarded body exactly when at least one rewrite clause was merged into it."""
REWRITE_HEADER = b"x-qrw-rewrite"
"""``X-QRW-Rewrite: off`` sends a search as written: no rewrites, no respelling, no zero-hit retry ("search
instead for ..." after a respelling was announced; a control arm of an A/B test)."""
QRW_HEADERS = frozenset({EXPLAIN_HEADER, TOKEN_HEADER, REWRITE_HEADER})
QUERY_APIS = frozenset({"_search", "_msearch", "_count", "_explain", "_validate", "_delete_by_query", "_update_by_query",
                        "_reindex", "_alias", "_aliases", "_field_caps", "_rank_eval", "_render"})
"""APIs whose bodies may hold query DSL: buffered and depth-checked."""
READ_APIS = frozenset({"_search", "_msearch", "_count", "_explain", "_validate", "_field_caps", "_mget", "_analyze",
                       "_termvectors", "_mtermvectors", "_rank_eval", "_render"})
"""APIs that only read: safe to send again to another node when a node fails."""
NOT_REPLAYABLE = ("scroll", "point_in_time", "_pit")
MEMO_ENTRIES = 20_000
MEMO_MAX_BODY = 8192
"""Search bodies up to this size are remembered with what was forwarded for them (``Proxy._remember``)."""
JSON_TYPE = b"application/json; charset=UTF-8"
LAST_RESORT = (b'{"error":{"root_cause":[{"type":"qrw_internal_exception","reason":"internal proxy error"}],'
               b'"type":"qrw_internal_exception","reason":"internal proxy error"},"status":500}')


def _apis(path: str) -> set[str]:
    return {segment for segment in path.split("/") if segment.startswith("_")}


def is_idempotent_read(method: str, path: str) -> bool:
    """GET/HEAD/OPTIONS, or a POST to a read-only API; never a scroll or point-in-time call."""
    if any(word in path for word in NOT_REPLAYABLE):
        return False
    if method in ("GET", "HEAD", "OPTIONS"):
        return True
    return method == "POST" and bool(_apis(path) & READ_APIS)


def _decode(body: bytes, encoding: bytes, limit: int) -> bytes | None:
    """``body`` decoded per its content-encoding; None for an encoding we do not know (the node decides).

    A body that claims gzip or deflate but does not decode is refused with a 400 here: OpenSearch
    itself drops the connection without an answer, which a proxy would otherwise read as a dead node.
    """
    encoding = encoding.strip().lower()
    if encoding in (b"", b"identity"):
        return body
    if encoding not in (b"gzip", b"x-gzip", b"deflate"):
        return None
    attempts = (47,) if encoding != b"deflate" else (15, -15)  # 47: gzip or zlib header; -15: raw deflate
    for wbits in attempts:
        decompressor = zlib.decompressobj(wbits)
        try:
            plain = decompressor.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(plain) > limit or decompressor.unconsumed_tail:
            raise BodyTooLarge(f"decoded request body exceeds the proxy's limit of {limit} bytes")
        if not decompressor.eof:
            break
        return plain
    raise BodyUnreadable(f"the request body is not valid {encoding.decode('latin-1')} (content-encoding)")


def _encode(body: bytes, encoding: bytes) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in (b"gzip", b"x-gzip"):
        return gzip.compress(body, compresslevel=5)
    if encoding == b"deflate":
        return zlib.compress(body)
    return body


EMPTY_WINDOW = 512
"""Bytes after a ``_search`` answer's first ``"hits"`` in which an empty hit list would be: the total and
``max_score`` come first (about 80 bytes compact, 120 pretty-printed)."""


def _is_scroll(target: bytes) -> bool:
    """A scroll request (``?scroll=``): its pages are not retried by zero-hit recovery."""
    _, _, query = target.partition(b"?")
    return any(part.split(b"=", 1)[0] == b"scroll" for part in query.split(b"&"))


def _parsed(data: bytes, response: Any) -> Any:
    """A JSON response body decoded per its content-encoding and parsed, or None."""
    try:
        plain = _decode(data, response.header(b"content-encoding") or b"", 1 << 31)
        return orjson.loads(plain) if plain is not None else None
    except (orjson.JSONDecodeError, BodyTooLarge, BodyUnreadable):
        return None


def _maybe_empty(data: bytes, response: Any, *, whole: bool = False) -> Any:
    """The parsed response when it may hold an empty hit list, else None: a cheap byte test first, so a search
    with results is never parsed. A ``_search`` answer starts with its ``hits`` object (after ``took`` and
    ``_shards``), so only a window after the first ``"hits"`` is searched, not the whole answer (searching
    5 KB for the pattern took 2 µs, a fifth of the proxy's own work per request); ``whole`` searches all of
    it (an ``_msearch`` answer holds one ``hits`` per item)."""
    try:
        plain = _decode(data, response.header(b"content-encoding") or b"", 1 << 31)
    except (BodyTooLarge, BodyUnreadable):
        return None
    if plain is None:
        return None
    if not whole:
        start = plain.find(b'"hits"')
        if start < 0:
            return None
        value = plain.find(b'"value":', start, start + 40)  # compact '"hits":{"total":{"value":N'
        if value >= 0 and plain[value + 8:value + 9] != b"0":  # JSON has no leading zeros: N is not 0
            return None  # the usual answer, decided without searching further
        window = plain[start:start + EMPTY_WINDOW]
    else:
        window = plain
    if b'"hits":[]' not in window and b'"hits" : [ ]' not in window:
        return None
    try:
        parsed = orjson.loads(plain)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _forward_headers(headers: list[tuple[bytes, bytes]], *, drop: frozenset[bytes] = frozenset()) -> list[tuple[bytes, bytes]]:
    """The client's headers minus hop-by-hop ones (and those the Connection header names), framing and ours."""
    connection = _header(headers, b"connection")
    if connection is None:
        skip = _SKIP.get(drop)
        if skip is None:
            skip = _SKIP[drop] = HOP_BY_HOP | drop | {b"content-length"}
    else:
        skip = HOP_BY_HOP | {token.strip().lower() for token in connection.split(b",")} | drop | {b"content-length"}
    return [(k, v) for k, v in headers if k not in skip]


_SKIP: dict[frozenset[bytes], frozenset[bytes]] = {}
"""``_forward_headers``' skip sets per ``drop`` set, when the client names no headers in ``Connection``."""


def _response_headers(headers: list[tuple[bytes, bytes]], *, replace_length: int | None = None) -> list[tuple[bytes, bytes]]:
    out = []
    for name, value in headers:
        lower = name.lower()
        if lower in HOP_BY_HOP:
            continue
        if replace_length is not None and lower == b"content-length":
            continue
        out.append((name, value))
    if replace_length is not None:
        out.append((b"content-length", str(replace_length).encode()))
    return out


def _summary(reports: list[dict | None]) -> str:
    reports = [r for r in reports if r is not None]
    rewritten = sum(1 for r in reports if r.get("rewritten"))
    kept = sum(1 for r in reports for row in r.get("rewrites", []) if row.get("action") in ("full", "down"))
    recovered = sum(1 for r in reports if (r.get("recovery") or {}).get("hits"))
    respelled = sum(1 for r in reports if r.get("respelling"))
    origins = ",".join(sorted({r.get("model", {}).get("origin", "-") for r in reports})) or "-"
    total = sum(r.get("timings_ms", {}).get("total", 0.0) for r in reports)
    return (f"rewritten={rewritten}/{len(reports)}; kept={kept}; respelled={respelled}; recovered={recovered}; "
            f"origin={origins}; ms={total:.3f}")


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def _read_body(receive: Callable, declared: bytes | None, limit: int) -> bytes:
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body of {int(declared)} bytes exceeds the proxy's limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body exceeds the proxy's limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
"""A whole response: status, headers, body."""


def json_answer(status: int, payload: Any) -> Answer:
    try:
        body = jsonbody.dumps(payload)
    except Exception:  # noqa: BLE001 - an error answer must go out even when our serialiser is the problem
        body = json.dumps(payload, ensure_ascii=True, default=str).encode() if status < 500 else LAST_RESORT
    return status, [(b"content-type", JSON_TYPE), (b"content-length", str(len(body)).encode())], body


class Responder:
    """Sends one ASGI response and remembers whether it started (an error can only replace an unstarted one)."""

    def __init__(self, send: Callable) -> None:
        self.send = send
        self.started = False
        self.status = 0

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        self.status = status
        await self.send({"type": "http.response.start", "status": status, "headers": headers})

    async def whole(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        await self.start(status, headers)
        await self.send({"type": "http.response.body", "body": body})

    async def json(self, status: int, payload: Any) -> None:
        await self.whole(*json_answer(status, payload))

    async def error(self, exc: BaseException) -> int:
        status, payload = to_response(exc)
        if not self.started:
            await self.json(status, payload)
        return status


class Proxy:
    """The ASGI application. State: engine (rewriting), upstreams (nodes), metrics, access control."""

    def __init__(self, engine: RewriteEngine, upstreams: list[str], config: ProxyConfig | None = None,
                 metrics: Metrics | None = None) -> None:
        self.engine = engine
        self.config = config or engine.config.proxy
        urls = list(dict.fromkeys([*upstreams, *self.config.upstreams]))
        if not urls:
            raise ValueError("the proxy needs at least one upstream OpenSearch URL")
        self.upstream_urls = urls
        self.access = DebugAccess(self.config.debug_networks, self.config.debug_token)
        self.metrics = metrics or Metrics()
        self.upstreams: Upstreams | None = None
        self._bodies: dict[tuple[bytes, str | None], tuple[str, object, bytes | None, bool, str, str | None]] = {}
        """(client bytes, index) -> (query text, verdict token, forwarded bytes or None, rewrite merged, cache key,
        the index respelling served or None)."""
        self._startup_lock = asyncio.Lock()
        self.last_error: dict | None = None
        self._model_threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(16, engine.config.chain.max_pending + 8), thread_name_prefix="qrw-request")
        source = engine.source
        source.on_outcome = self._model_outcome
        source.on_model_call = self.metrics.model_call
        self.log_filter = lograte.install()
        self.log_filter.on_suppressed = self.metrics.suppressed.inc

    # -- lifecycle -------------------------------------------------------------------------------

    def _settings(self) -> UpstreamSettings:
        c = self.config
        return UpstreamSettings(connect_timeout_s=c.connect_timeout_s, read_timeout_s=c.upstream_timeout_s,
                                max_connections=c.max_connections, pool_timeout_s=c.pool_timeout_s,
                                health_interval_s=c.health_interval_s)

    async def startup(self) -> None:
        # the model is warm before uvicorn accepts a connection (idempotent: the engine warms at start too)
        await asyncio.get_running_loop().run_in_executor(self._model_threads, self.engine.warm_up)
        self.upstreams = Upstreams(self.upstream_urls, self._settings(), observe=self.metrics.upstream)
        await self.upstreams.start()

    async def shutdown(self) -> None:
        if self.upstreams is not None:
            await self.upstreams.close()
        self._model_threads.shutdown(wait=False, cancel_futures=True)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # noqa: BLE001
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- bookkeeping ----------------------------------------------------------------------------

    def _model_outcome(self, origin: str, reason: str | None) -> None:
        self.metrics.model_outcome(origin, reason)
        if reason not in (None, "no_model"):
            self.last_error = {"where": "model", "reason": reason, "at": time.time()}

    def _note_error(self, exc: BaseException, status: int) -> None:
        if status >= 500:
            self.last_error = {"where": "proxy" if status == 500 else "upstream", "status": status,
                               "type": to_response(exc)[1]["error"]["type"], "message": str(getattr(exc, "message", exc))[:500],
                               "at": time.time()}

    # -- ASGI entry point -----------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if self.upstreams is None:  # served without lifespan (e.g. some test servers): start lazily, once
            async with self._startup_lock:
                if self.upstreams is None:
                    await self.startup()
        started = time.perf_counter()
        responder = Responder(send)
        route = "passthrough"
        try:
            route = await self._route(scope, receive, responder)
        except ClientGone:
            responder.status = 499
        except ProxyError as exc:
            status = await responder.error(exc)
            self._note_error(exc, status)
            if status >= 500:
                log.warning("%s %s -> %d: %s", scope["method"], scope["path"], status, exc.message)
        except Exception as exc:  # noqa: BLE001 - every error the proxy makes is answered in OpenSearch's shape
            log.exception("unexpected error in the proxy for %s %s", scope.get("method"), scope.get("path"))
            status = await responder.error(exc)
            self._note_error(exc, status)
        finally:
            self.metrics.request(route, responder.status or 500, time.perf_counter() - started)

    async def _route(self, scope: dict, receive: Callable, responder: Responder) -> str:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith("/_qrw/") or path == "/_qrw":
            await self._qrw(scope, path, method, responder)
            return "qrw"
        match = SEARCH_PATH.match(path)
        if match is not None and method in ("GET", "POST"):
            api = match["api"]
            await self._search(scope, receive, responder, match["index"], api)
            return "search" if api == "_search" else "msearch"
        await self._passthrough(scope, receive, responder, path, method)
        return "passthrough"

    @staticmethod
    def _target(scope: dict) -> bytes:
        raw = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        return raw + b"?" + query if query else raw

    def _debug_allowed(self, scope: dict) -> bool:
        client = scope.get("client")
        return self._debug_allowed_for(client[0] if client else None, scope["headers"])

    def _debug_allowed_for(self, client_host: str | None, headers: list[tuple[bytes, bytes]]) -> bool:
        return self.access.enabled and self.access.allows(client_host, headers)

    # -- /_qrw/* ----------------------------------------------------------------------------------

    async def _qrw(self, scope: dict, path: str, method: str, responder: Responder) -> None:
        name = path.rstrip("/")
        if method not in ("GET", "HEAD"):
            raise NotFound(f"no handler for {method} {path}")
        if name == "/_qrw/health":
            await self._health(scope, responder)
        elif name == "/_qrw/stats":
            if not self._debug_allowed(scope):
                raise Forbidden("/_qrw/stats is a debug surface; allow it with proxy.debug_networks or proxy.debug_token")
            await responder.json(200, self.stats())
        elif name == "/_qrw/metrics":
            if not self._debug_allowed(scope):
                raise Forbidden("/_qrw/metrics is a debug surface; allow it with proxy.debug_networks or proxy.debug_token")
            body = self.metrics.render()
            await responder.whole(200, [(b"content-type", self.metrics.content_type.encode()),
                                        (b"content-length", str(len(body)).encode())], body)
        else:
            raise NotFound(f"no handler for {path}; the proxy serves /_qrw/health, /_qrw/metrics, /_qrw/stats")

    def stats(self) -> dict:
        source = self.engine.source
        return {"model": self.engine.model_name, "cache": self.engine.cache.stats(), "model_failures": source.failures,
                "model_call_ms": round(source.call_seconds * 1000, 3) if source.call_seconds is not None else None,
                "upstreams": self.upstreams.status() if self.upstreams else [], "log_lines_suppressed": self.log_filter.suppressed,
                "rules": len(self.engine.rules)}

    async def _health(self, scope: dict, responder: Responder) -> None:
        nodes = self.upstreams.status() if self.upstreams else []
        reachable = sum(1 for n in nodes if n["healthy"])
        detail = self._debug_allowed(scope)
        last = self.last_error
        if last is not None and not detail:
            last = {k: v for k, v in last.items() if k not in ("message",)}
        payload = {
            "status": "green" if reachable == len(nodes) and nodes else ("yellow" if reachable else "red"),
            "model": {"loaded": self.engine.source.model is not None, "name": self.engine.model_name if detail else None},
            "upstream": {"reachable": reachable, "nodes": len(nodes),
                         **({"details": nodes} if detail else {})},
            "last_error": last,
        }
        await responder.json(200 if reachable else 503, payload)

    # -- search and msearch ---------------------------------------------------------------------

    async def _search(self, scope: dict, receive: Callable, responder: Responder, index: str | None, api: str) -> None:
        headers = scope["headers"]
        raw = await _read_body(receive, _header(headers, b"content-length"), self.config.max_body_bytes)
        client = scope.get("client")
        await responder.whole(*await self._search_answer(scope["method"], self._target(scope), index, api, headers,
                                                         client[0] if client else None, raw))

    async def search_answer(self, method: str, target: bytes, path: str, index: str | None, api: str,
                            headers: list[tuple[bytes, bytes]], client_host: str | None, raw: bytes) -> Answer:
        """The whole answer to a ``_search``/``_msearch`` request whose body is in hand, for the server's
        direct path (``http_server``): what ``__call__`` would send for it, errors included, with the same
        metrics and error bookkeeping. Never raises (except cancellation)."""
        started = time.perf_counter()
        try:
            answer = await self._search_answer(method, target, index, api, headers, client_host, raw)
        except ProxyError as exc:
            answer = json_answer(*to_response(exc))
            self._note_error(exc, answer[0])
            if answer[0] >= 500:
                log.warning("%s %s -> %d: %s", method, path, answer[0], exc.message)
        except Exception as exc:  # noqa: BLE001 - every error the proxy makes is answered in OpenSearch's shape
            log.exception("unexpected error in the proxy for %s %s", method, path)
            answer = json_answer(*to_response(exc))
            self._note_error(exc, answer[0])
        self.metrics.request("search" if api == "_search" else "msearch", answer[0], time.perf_counter() - started)
        return answer

    async def _search_answer(self, method: str, target: bytes, index: str | None, api: str,
                             headers: list[tuple[bytes, bytes]], client_host: str | None, raw: bytes) -> Answer:
        started = time.perf_counter()
        debug = self._debug_allowed_for(client_host, headers)
        explain_value = _header(headers, EXPLAIN_HEADER)
        explain = debug and explain_value is not None and truthy(explain_value.decode("latin-1"))
        encoding = _header(headers, b"content-encoding") or b""
        content = raw
        reports: list[dict | None] = []
        # for the announcement headers: the index respelling served with a _search (for an _msearch, by item)
        respelled: str | dict[int, str] | None = None
        retried: bool | list[int] = False  # the zero-hit retry answered (for an _msearch: which items)
        forward = _forward_headers(headers, drop=QRW_HEADERS)
        plain = _decode(raw, encoding, self.config.max_body_bytes) if raw else raw
        sent = plain
        rewrite_value = _header(headers, REWRITE_HEADER)
        as_written = rewrite_value is not None and not truthy(rewrite_value.decode("latin-1"))
        if as_written and plain is not None and jsonbody.deeper_than(plain, self.config.max_json_depth):
            raise BodyTooDeep(self._depth_reason())  # the depth limit protects the node whatever the client asks
        if plain is not None and plain.strip() and not as_written:
            if api == "_search":
                memo_key = self._memo_key(plain, index, explain)
                remembered = self._remembered(memo_key)  # remembered bodies passed the depth check below
                if remembered is None and jsonbody.deeper_than(plain, self.config.max_json_depth):
                    raise BodyTooDeep(self._depth_reason())
                changed, reports, respelled = remembered or await self._rewrite_fresh(plain, index, explain, debug, memo_key,
                                                                                       forward, encoding)
            else:
                changed, reports, respelled = await self._rewrite_msearch(plain, index, explain, debug, forward, encoding)
            if changed is not None:
                content = _encode(changed, encoding)
                sent = changed
        response, data = await self._upstreams().request(method, target, forward, content,
                                                         retryable=True, buffer_response=True)
        assert data is not None
        resized = False
        empty = (_maybe_empty(data, response, whole=api != "_search")
                 if response.status == 200 and sent and self.engine.config.recovery.zero_hits and not as_written else None)
        if empty is not None and not _is_scroll(target):  # the cheap byte test first: most answers stop there
            if api == "_search":
                if self.engine.enabled_for(index):  # recovery rewrites too: only where rewriting is on
                    empty_response = response
                    response, data = await self._recover_search(method, target, forward, encoding, sent, response,
                                                                 data, reports, empty)
                    retried = response is not empty_response
            else:
                data, resized, retried = await self._recover_msearch(method, target, forward, encoding, sent, response,
                                                                     data, reports, index, empty)
        announced = self._announcements(respelled, retried) if (respelled or retried) and self.config.announce_changes else None
        report_wanted = debug and any(r is not None for r in reports)
        if not report_wanted:
            out_headers = _response_headers(response.headers, replace_length=len(data) if resized else None)
            return response.status, (out_headers + announced if announced else out_headers), data
        data = self._with_reports(data, response.header(b"content-encoding") or b"", api, reports)
        extra = [(b"x-qrw-explain", _summary(reports).encode()),
                 (b"x-qrw-took-ms", f"{(time.perf_counter() - started) * 1000.0:.3f}".encode())]
        return response.status, _response_headers(response.headers, replace_length=len(data)) + extra + (announced or []), data

    @staticmethod
    def _announcements(respelled: str | dict[int, str] | None, retried: bool | list[int]) -> list[tuple[bytes, bytes]]:
        """The headers that tell a shop how the results differ from the query as typed (``proxy.announce_changes``).
        For a ``_search``: ``X-QRW-Respelling: microsd%20card`` and ``X-QRW-Zero-Hit-Retry: fuzzy``; for an
        ``_msearch``, by the item's position in ``responses``: ``0=headset,2=keyboard%20xqzv`` and ``1=fuzzy``.

        Why: a shop must be able to say "including results for «microsd card»" or "no exact match; similar
        products", as search engines do. The debug explain report says it too, but only to debug clients."""
        headers = []
        if isinstance(respelled, dict):
            if respelled:
                headers.append((RESPELLING_HEADER, ",".join(f"{i}={quote(t, safe='')}" for i, t in sorted(respelled.items()))
                                .encode("ascii")))
        elif respelled is not None:
            headers.append((RESPELLING_HEADER, quote(respelled, safe="").encode("ascii")))
        if isinstance(retried, list):
            if retried:
                headers.append((ZERO_HIT_RETRY_HEADER, ",".join(f"{i}=fuzzy" for i in retried).encode("ascii")))
        elif retried:
            headers.append((ZERO_HIT_RETRY_HEADER, b"fuzzy"))
        return headers

    async def _recover_search(self, method: str, target: bytes, forward: list, encoding: bytes, sent: bytes,
                              response: Any, data: bytes, reports: list[dict | None], answer: dict) -> tuple[Any, bytes]:
        """Zero-hit recovery (``qrw.plugin.recovery``) of one ``_search`` whose parsed ``answer`` may be empty:
        (response, data) to answer with."""
        try:
            body = jsonbody.loads_faithful(sent)
        except ValueError:
            return response, data
        config = self.engine.config.recovery
        retry = recovery.retry_body(body, answer, config)
        if retry is None:
            return response, data
        try:
            second, second_data = await self._upstreams().request(
                method, target, forward, _encode(jsonbody.dumps(retry), encoding), retryable=True, buffer_response=True)
        except ProxyError:
            self.metrics.recovery("failed")
            return response, data  # the empty answer stands
        recovered = _parsed(second_data or b"", second) if second.status == 200 else None
        found = isinstance(recovered, dict) and not recovery.found_nothing(recovered) and "hits" in recovered
        recovery.note(reports[0] if reports else None, recovered if found else None, config)
        self.metrics.recovery("recovered" if found else ("empty" if second.status == 200 else "failed"))
        return (second, second_data or b"") if found else (response, data)

    async def _recover_msearch(self, method: str, target: bytes, forward: list, encoding: bytes, sent: bytes,
                               response: Any, data: bytes, reports: list[dict | None],
                               index: str | None, answer: dict) -> tuple[bytes, bool, list[int]]:
        """Zero-hit recovery of the empty items of one ``_msearch`` (its parsed ``answer``), all retried in one
        more ``_msearch``: (data to answer with, whether it changed, the positions of the items recovered)."""
        items = msearch_framing.split(sent)
        if items is None:
            return data, False, []
        pairs: list[tuple[Any, Any]] = []
        for item in items:
            if not self.engine.enabled_for(msearch_framing.target_index(item.header, index)):
                pairs.append((item.header, None))  # rewriting is off for that index: so is recovery
                continue
            try:
                pairs.append((item.header, jsonbody.loads_faithful(sent[item.body_start:item.body_end])))
            except ValueError:
                pairs.append((item.header, None))
        config = self.engine.config.recovery
        retries = recovery.msearch_retries(pairs, answer.get("responses"), config)
        if not retries:
            return data, False, []
        lines = b"".join(jsonbody.dumps(header) + b"\n" + jsonbody.dumps(body) + b"\n" for _, header, body in retries)
        try:
            second, second_data = await self._upstreams().request(
                method, target, forward, _encode(lines, encoding), retryable=True, buffer_response=True)
        except ProxyError:
            self.metrics.recovery("failed", len(retries))
            return data, False, []
        parsed = _parsed(second_data or b"", second) if second.status == 200 else None
        answers = parsed.get("responses") if isinstance(parsed, dict) else None
        before = list(answer["responses"])
        recovered = recovery.splice(answer["responses"], retries, answers, reports if reports else None, config)
        self.metrics.recovery("recovered", recovered)
        self.metrics.recovery("empty" if answers is not None else "failed", len(retries) - recovered)
        if not recovered:
            return data, False, []
        positions = [i for i, (old, new) in enumerate(zip(before, answer["responses"])) if old is not new]
        return _encode(jsonbody.dumps(answer), response.header(b"content-encoding") or b""), True, positions

    def _depth_reason(self) -> str:
        return (f"the request body is nested deeper than {self.config.max_json_depth} levels "
                f"(proxy.max_json_depth); such queries can crash an OpenSearch node")

    @staticmethod
    def _with_reports(data: bytes, encoding: bytes, api: str, reports: list[dict | None]) -> bytes:
        try:
            plain = _decode(data, encoding, 1 << 31)
            payload = orjson.loads(plain) if plain is not None else None
        except (orjson.JSONDecodeError, BodyTooLarge, BodyUnreadable):
            payload = None
        if not isinstance(payload, dict):
            return data
        if api == "_search":
            payload["qrw"] = reports[0]
        elif isinstance(payload.get("responses"), list):
            for item, report in zip(payload["responses"], reports):
                if isinstance(item, dict) and report is not None:
                    item["qrw"] = report
        return _encode(jsonbody.dumps(payload), encoding)

    async def _in_thread(self, function: Callable, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._model_threads, lambda: function(*args, **kwargs))

    @staticmethod
    def _drop_debug_options(body: dict) -> dict:
        """A client without debug access cannot turn explain on through ``ext.qrw.explain``."""
        ext = body.get("ext")
        if isinstance(ext, dict) and isinstance(ext.get("qrw"), dict) and "explain" in ext["qrw"]:
            options = {k: v for k, v in ext["qrw"].items() if k != "explain"}
            return {**body, "ext": {**ext, "qrw": options}}
        return body

    def _parse(self, line: bytes, debug: bool) -> dict | None:
        """The body as OpenSearch reads it, or None when it is not a JSON object we can give back unchanged."""
        try:
            body = jsonbody.loads_faithful(line)
        except (ValueError, RecursionError):
            return None  # OpenSearch answers it, as without the proxy
        if not isinstance(body, dict):
            return None
        return body if debug else self._drop_debug_options(body)

    def _rewrite_parsed(self, body: dict, index: str | None, explain: bool) -> tuple[bytes | None, dict | None]:
        """(new bytes, or None when the body is unchanged; explain report). Never raises."""
        new_body, report = self.engine.rewrite_body(body, index=index, explain=explain)
        if new_body == body:
            self.metrics.body(False)
            return None, report
        try:
            data = jsonbody.dumps(new_body)
            self.metrics.body(REWRITE_MARK in data)
            return data, report
        except (TypeError, ValueError):
            log.exception("cannot serialise a rewritten body; sending the client's")
            return None, report

    def _needs_model(self, body: dict, index: str | None) -> bool:
        """Could rewriting ``body`` wait for the model? (then it runs off the event loop)"""
        return self.engine.source.model is not None and self.engine.enabled_for(index) and self.engine.needs_model(body, index)

    def _memo_key(self, plain: bytes, index: str | None, explain: bool) -> tuple[bytes, str | None] | None:
        return (plain, index) if not explain and len(plain) <= MEMO_MAX_BODY and b'"qrw"' not in plain else None

    def _remembered(self, memo_key: tuple[bytes, str | None] | None) -> tuple[bytes | None, list, str | None] | None:
        """(forwarded bytes, reports, the respelling served) of a remembered body whose verdict is current, else
        None. Synchronous: the cache-hit path awaits nothing before the upstream exchange."""
        if memo_key is not None:
            remembered = self._bodies.get(memo_key)
            if remembered is not None and self.engine.verdict_is_current(remembered[0], remembered[1], key=remembered[4]):
                self.metrics.body(remembered[3])
                return remembered[2], [None], remembered[5]
        return None

    async def _read_brands(self, forward: list) -> None:
        """Read the brand guard's brands (``guards.brands_field``) when the read at start failed, e.g. the proxy
        started before OpenSearch: before a search that may need the model, at most every ``BRANDS_RETRY_S``
        (``RewriteEngine.brands_ask``). A failure is logged; the search goes on with the configured brands."""
        body = self.engine.brands_ask()
        if body is None:
            return
        headers = [(k, v) for k, v in forward if k.lower() not in (b"content-type", b"content-encoding")]
        headers.append((b"content-type", b"application/json"))
        try:
            response, data = await asyncio.wait_for(self._upstreams().request(
                "POST", b"/_search", headers, jsonbody.dumps(body), retryable=True, buffer_response=True), BRANDS_TIMEOUT_S)
        except (ProxyError, asyncio.TimeoutError) as exc:
            log.warning("brand guard: could not read brands from %s: %s", self.engine.config.guards.brands_field, exc)
            return
        answer = _parsed(data or b"", response) if response.status == 200 else None
        known = self.engine.add_brands_from(answer) if isinstance(answer, dict) else 0
        if not self.engine.brands_read:
            log.warning("brand guard: could not read brands from %s: status %s", self.engine.config.guards.brands_field,
                        response.status)
            return
        log.info("brand guard: %d brands (%s)", known, self.engine.config.guards.brands_field)

    async def _respell(self, bodies: list[tuple[Any, str | None]], forward: list, encoding: bytes) -> None:
        """Ask the index which query words it does not hold (``qrw.plugin.respell``) for each (body, index) whose
        answer the engine does not remember, all at once; the engine keeps the answers for ``rewrite_body``. A
        failure or an answer slower than ``respell.timeout_ms`` costs only that query's respelling."""
        asks = [ask for body, index in bodies if (ask := self.engine.respell_ask(body, index)) is not None]
        if not asks:
            return
        headers = [(k, v) for k, v in forward if k.lower() != b"content-type"] + [(b"content-type", b"application/json")]
        timeout = self.engine.config.respell.timeout_ms / 1000.0

        async def send(ask: Any) -> tuple[Any, bytes | None]:
            target = (f"/{quote(ask.index, safe=',*')}/_search" if ask.index else "/_search").encode()
            return await asyncio.wait_for(self._upstreams().request(
                "POST", target, headers, _encode(jsonbody.dumps(ask.body), encoding), retryable=True,
                buffer_response=True), timeout)

        async def one(ask: Any) -> None:
            try:
                response, data = await send(ask)
            except (ProxyError, asyncio.TimeoutError):
                self.metrics.respell("failed")
                return
            refused = response.status == 400  # e.g. no such field on this index: not asked again for a while
            answer = _parsed(data or b"", response) if response.status in (200, 400) else None
            held, confirmed = None, True
            check = None if refused else self.engine.respell_check(ask, answer)
            if check is not None:  # a multi-shard answer proposes a correction: does any shard hold the word after all?
                try:
                    checked, checked_data = await send(check)
                    held = _parsed(checked_data or b"", checked) if checked.status == 200 else None
                except (ProxyError, asyncio.TimeoutError):
                    held = None
                confirmed = held is not None
            found = self.engine.respell_answer(ask, answer, refused=refused, held=held)
            outcome = "refused" if refused else ("unchanged" if response.status == 200 and confirmed else "failed")
            self.metrics.respell("respelled" if found is not None else outcome)

        await asyncio.gather(*(one(ask) for ask in asks))

    async def _rewrite_fresh(self, plain: bytes, index: str | None, explain: bool, debug: bool,
                             memo_key: tuple[bytes, str | None] | None, forward: list,
                             encoding: bytes) -> tuple[bytes | None, list, str | None]:
        """(bytes to forward or None, reports, the index respelling served or None) for a body not remembered."""
        body = self._parse(plain, debug)
        if body is None:
            return None, [], None
        await self._read_brands(forward)
        await self._respell([(body, index)], forward, encoding)
        if self._needs_model(body, index):
            changed, report = await self._in_thread(self._rewrite_parsed, body, index, explain)
        else:
            changed, report = self._rewrite_parsed(body, index, explain)
        respelled = self._served_respelling(body, index, changed)
        if memo_key is not None:
            self._remember(memo_key, body, index, changed, respelled)
        return changed, [report], respelled

    def _served_respelling(self, body: dict, index: str | None, changed: bytes | None) -> str | None:
        """The text of the index respelling that went out with this body: None when no rewrite clause went out."""
        if changed is None or REWRITE_MARK not in changed:
            return None
        text = self.engine.rewritable_text(body)
        found = self.engine.respelling(text, index) if text is not None else None
        return found.text if found is not None else None

    def _remember(self, key: tuple[bytes, str | None], body: dict, index: str | None, changed: bytes | None,
                  respelled: str | None = None) -> None:
        """Keep the forwarded bytes of a search body whose rewrites came from a remembered verdict: the same
        client bytes then skip parsing, the chain and serialisation while that verdict stays current."""
        if not self.engine.enabled_for(index):
            return
        user_text = self.engine.rewritable_text(body)
        if user_text is None:
            return
        text = self.engine.model_text(user_text, index)  # the verdict is the respelled text's when there is one
        token = self.engine.verdict(text)
        if token is None or not self.engine.verdict_is_current(text, token, count=False):
            return
        rewritten = bool(token[1]) or self.engine.respelling(user_text, index) is not None  # a respelling rides along
        if rewritten != (changed is not None and REWRITE_MARK in changed):
            return  # this request was not served from that verdict (e.g. its cache entry had been evicted)
        if len(self._bodies) >= MEMO_ENTRIES:
            self._bodies.clear()
        self._bodies[key] = (text, token, changed, changed is not None and REWRITE_MARK in changed, cache_key(text), respelled)

    def _rewrite_msearch_sync(self, plain: bytes, items: list, bodies: list, index: str | None,
                              explain: bool) -> tuple[bytes | None, list, dict[int, str]]:
        """(bytes to forward or None, reports, the index respelling served per item position)."""
        replacements: dict[int, bytes] = {}
        reports: list[dict | None] = []
        respelled: dict[int, str] = {}
        for i, (item, body) in enumerate(zip(items, bodies)):
            if body is None:
                reports.append(None)
                continue
            target = msearch_framing.target_index(item.header, index)
            changed, report = self._rewrite_parsed(body, target, explain)
            if changed is not None:
                replacements[i] = changed
                if (found := self._served_respelling(body, target, changed)) is not None:
                    respelled[i] = found
            reports.append(report)
        return (msearch_framing.join(plain, items, replacements) if replacements else None), reports, respelled

    async def _rewrite_msearch(self, plain: bytes, index: str | None, explain: bool, debug: bool, forward: list,
                               encoding: bytes) -> tuple[bytes | None, list, dict[int, str]]:
        items = msearch_framing.split(plain)
        if items is None:
            return None, [], {}  # OpenSearch refuses this framing itself: forward it untouched
        bodies = []
        for item in items:
            line = plain[item.body_start:item.body_end]
            if jsonbody.deeper_than(line, self.config.max_json_depth):
                raise BodyTooDeep(self._depth_reason())
            bodies.append(self._parse(line, debug) if line.strip() else None)
        await self._read_brands(forward)
        await self._respell([(b, msearch_framing.target_index(it.header, index)) for it, b in zip(items, bodies) if b is not None],
                            forward, encoding)
        if any(b is not None and self._needs_model(b, msearch_framing.target_index(it.header, index)) for it, b in zip(items, bodies)):
            return await self._in_thread(self._rewrite_msearch_sync, plain, items, bodies, index, explain)
        return self._rewrite_msearch_sync(plain, items, bodies, index, explain)

    # -- everything else ------------------------------------------------------------------------

    def _upstreams(self) -> Upstreams:
        assert self.upstreams is not None
        return self.upstreams

    async def _passthrough(self, scope: dict, receive: Callable, responder: Responder, path: str, method: str) -> None:
        headers = scope["headers"]
        declared = _header(headers, b"content-length")
        chunked = _header(headers, b"transfer-encoding") is not None
        has_body = chunked or (declared is not None and declared != b"0")
        apis = _apis(path)
        read = is_idempotent_read(method, path)
        forward = _forward_headers(headers, drop=frozenset({TOKEN_HEADER}))
        body: bytes | StreamBody | None
        if not has_body:
            body = b"" if declared == b"0" else None
        elif apis & QUERY_APIS or read:
            body = await _read_body(receive, declared, self.config.max_body_bytes)
            if apis & QUERY_APIS:
                plain = _decode(body, _header(headers, b"content-encoding") or b"", self.config.max_body_bytes)
                if plain is not None and jsonbody.deeper_than(plain, self.config.max_json_depth):
                    raise BodyTooDeep(self._depth_reason())
        else:
            if declared is not None and declared.isdigit() and int(declared) > self.config.max_body_bytes:
                raise BodyTooLarge(f"request body of {int(declared)} bytes exceeds the proxy's limit of {self.config.max_body_bytes} bytes")
            body = StreamBody(int(declared) if declared is not None and declared.isdigit() else None,
                              lambda: self._stream_request(receive))
            read = False
        response, _ = await self._upstreams().request(method, self._target(scope), forward, body, retryable=read)
        try:
            await responder.start(response.status, _response_headers(response.headers))
            if method == "HEAD":
                await responder.send({"type": "http.response.body", "body": b""})
                return
            more = True
            while more:
                chunk = await response.exchange.next_chunk()
                more = chunk is not None
                await responder.send({"type": "http.response.body", "body": chunk or b"", "more_body": more})
        finally:
            response.release()

    async def _stream_request(self, receive: Callable) -> AsyncIterator[bytes]:
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.config.max_body_bytes:
                raise BodyTooLarge(f"request body exceeds the proxy's limit of {self.config.max_body_bytes} bytes")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return


def create_app(engine: RewriteEngine, upstream: str | list[str] | None = None, *, metrics: Metrics | None = None) -> Proxy:
    """The proxy as an ASGI app, for one upstream URL or a list (plus ``proxy.upstreams`` from the config)."""
    urls = [upstream] if isinstance(upstream, str) else list(upstream or [])
    return Proxy(engine, urls, metrics=metrics)


def serve_config(app: Any, host: str, port: int, *, log_level: str = "warning", workers: int = 1, factory: bool = False) -> Any:
    """The uvicorn settings the proxy runs with (CLI and tests alike): httptools (with a response's head
    and body in one write, ``http_server``) + uvloop when installed, no ``server``/``date`` headers of
    its own (responses carry OpenSearch's headers only)."""
    import importlib.util

    import uvicorn

    http = "qrw.plugin.http_server:ProxyHttpProtocol" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False, http=http, loop=loop,
                          server_header=False, date_header=False, timeout_keep_alive=75, lifespan="on",
                          workers=workers, factory=factory)
