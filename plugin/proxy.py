"""An asynchronous reverse proxy speaking OpenSearch's REST API, rewriting ``_search`` and ``_msearch``.

* ``GET|POST [/{index}]/_search`` and ``[/{index}]/_msearch``: the body goes through the engine
  (on the event loop when a fresh cache entry answers, else in a worker thread bounded by the
  request's deadline) and is forwarded; ``ext.qrw`` is always stripped.
* Every other request is streamed through unchanged, both ways: method, path, query string,
  headers (``Authorization`` included; hop-by-hop headers excepted), body, status.
* Explain: request header ``X-QRW-Explain: true`` or ``"ext": {"qrw": {"explain": true}}``; the
  report goes into the response JSON under ``"qrw"`` (per response for msearch) and a one-line
  summary into the ``X-QRW-Explain`` response header.
* Failures the proxy causes are answered like OpenSearch's errors (``errors.to_response``):
  upstream unreachable 502, upstream timeout 504, connection pool exhausted 503, body too large 413.
  The rewriter itself never causes an error response. ``GET /_qrw/stats`` reports model and cache.

The httpx client is opened in the app's lifespan and kept on ``app.state``; handlers never see globals.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qrw.plugin.client import parse_msearch
from qrw.plugin.config import ProxyConfig
from qrw.plugin.engine import RewriteEngine, truthy
from qrw.plugin.errors import BodyTooLarge, ProxyError, ProxyOverloaded, UpstreamTimeout, UpstreamUnavailable, to_response

log = logging.getLogger("qrw.proxy")

SEARCH_PATH = re.compile(r"^/(?:(?P<index>[^/]+)/)?(?P<api>_search|_msearch)/?$")
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
    "transfer-encoding", "upgrade", "host",
})
EXPLAIN_HEADER = "x-qrw-explain"
METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"]


def _request_headers(request: Request, *, drop_length: bool) -> list[tuple[str, str]]:
    skip = HOP_BY_HOP | ({"content-length"} if drop_length else set())
    return [(k, v) for k, v in request.headers.items() if k.lower() not in skip]


def _response_headers(upstream: httpx.Response, *, decoded: bool) -> dict[str, str]:
    skip = HOP_BY_HOP | ({"content-length", "content-encoding"} if decoded else set())
    return {k: v for k, v in upstream.headers.items() if k.lower() not in skip}


def _upstream_path(request: Request) -> str:
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


async def _send(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    """Send and map transport failures to our errors (the one place that knows httpx's exceptions)."""
    try:
        return await client.send(request, stream=True)
    except httpx.PoolTimeout as exc:
        raise ProxyOverloaded("no free connection to OpenSearch (pool exhausted)") from exc
    except httpx.ConnectTimeout as exc:
        raise UpstreamUnavailable(f"cannot connect to OpenSearch at {client.base_url}: connect timeout") from exc
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(f"OpenSearch at {client.base_url} did not answer in time: {type(exc).__name__}") from exc
    except (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError, httpx.UnsupportedProtocol) as exc:
        raise UpstreamUnavailable(f"cannot reach OpenSearch at {client.base_url}: {type(exc).__name__}: {exc}") from exc


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(f"request body of {declared} bytes exceeds the proxy's limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"request body exceeds the proxy's limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_raw(upstream: httpx.Response) -> bytes:
    return b"".join([chunk async for chunk in upstream.aiter_raw()])


def _stream_back(upstream: httpx.Response, extra_headers: dict[str, str] | None = None) -> StreamingResponse:
    headers = _response_headers(upstream, decoded=False)
    if extra_headers:
        headers.update(extra_headers)
    return StreamingResponse(upstream.aiter_raw(), status_code=upstream.status_code, headers=headers,
                             background=BackgroundTask(upstream.aclose))


def _summary(reports: list[dict | None]) -> str:
    reports = [r for r in reports if r is not None]
    rewritten = sum(1 for r in reports if r.get("rewritten"))
    kept = sum(1 for r in reports for row in r.get("rewrites", []) if row.get("action") in ("full", "down"))
    origins = ",".join(sorted({r.get("model", {}).get("origin", "-") for r in reports})) or "-"
    total = sum(r.get("timings_ms", {}).get("total", 0.0) for r in reports)
    return f"rewritten={rewritten}/{len(reports)}; kept={kept}; origin={origins}; ms={total:.3f}"


class Proxy:
    """Route handlers; state (engine, config, upstream client) comes from the app."""

    def __init__(self, engine: RewriteEngine, config: ProxyConfig) -> None:
        self.engine = engine
        self.config = config

    @staticmethod
    def client(request: Request) -> httpx.AsyncClient:
        return request.app.state.upstream

    async def handle(self, request: Request) -> Response:
        if request.url.path == "/_qrw/stats" and request.method == "GET":
            return JSONResponse({"model": self.engine.model_name, "cache": self.engine.cache.stats(),
                                 "model_failures": self.engine.source.failures})
        match = SEARCH_PATH.match(request.url.path)
        if match is not None and request.method in ("GET", "POST"):
            return await self.search(request, match["index"], match["api"])
        return await self.passthrough(request)

    async def passthrough(self, request: Request) -> Response:
        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        outgoing = self.client(request).build_request(
            request.method, _upstream_path(request), headers=_request_headers(request, drop_length=False),
            content=request.stream() if has_body else None,
        )
        return _stream_back(await _send(self.client(request), outgoing))

    async def _rewrite(self, function: Any, *args: Any, needs_model: bool, **kwargs: Any) -> Any:
        if needs_model:
            return await anyio.to_thread.run_sync(lambda: function(*args, **kwargs))
        return function(*args, **kwargs)

    async def search(self, request: Request, index: str | None, api: str) -> Response:
        started = time.perf_counter()
        raw = await _read_limited(request, self.config.max_body_bytes)
        explain = self.config.explain_header and truthy(request.headers.get(EXPLAIN_HEADER, ""))
        content: bytes = raw
        reports: list[dict | None] = []
        if raw.strip():
            if api == "_search":
                content, reports = await self._rewrite_search(raw, index, explain)
            else:
                content, reports = await self._rewrite_msearch(raw, index, explain)
        want_report = self.config.explain_header and any(r is not None for r in reports)
        outgoing = self.client(request).build_request(
            request.method, _upstream_path(request), headers=_request_headers(request, drop_length=True), content=content,
        )
        upstream = await _send(self.client(request), outgoing)
        took = {"X-QRW-Took-Ms": f"{(time.perf_counter() - started) * 1000.0:.3f}"}
        try:
            # Search responses are read whole (bounded by size/from); raw bytes unless we must edit them.
            data = await (upstream.aread() if want_report else _read_raw(upstream))
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(f"OpenSearch closed the response early: {type(exc).__name__}") from exc
        finally:
            await upstream.aclose()
        if not want_report:
            return Response(data, status_code=upstream.status_code, headers={**_response_headers(upstream, decoded=False), **took})
        headers = {**_response_headers(upstream, decoded=True), **took, "X-QRW-Explain": _summary(reports)}
        try:
            payload = json.loads(data)
        except ValueError:
            return Response(data, status_code=upstream.status_code, headers=headers)
        if api == "_search" and isinstance(payload, dict):
            payload["qrw"] = reports[0]
        elif isinstance(payload, dict) and isinstance(payload.get("responses"), list):
            for item, report in zip(payload["responses"], reports):
                if isinstance(item, dict) and report is not None:
                    item["qrw"] = report
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        headers["content-type"] = upstream.headers.get("content-type", "application/json; charset=UTF-8")
        return Response(body, status_code=upstream.status_code, headers=headers)

    async def _rewrite_search(self, raw: bytes, index: str | None, explain: bool) -> tuple[bytes, list[dict | None]]:
        try:
            body = json.loads(raw)
        except ValueError:
            return raw, []  # malformed: OpenSearch answers its own parse error, as without the proxy
        if not isinstance(body, dict):
            return raw, []
        needs = self.engine.enabled_for(index) and self.engine.needs_model(body)
        new_body, report = await self._rewrite(self.engine.rewrite_body, body, index=index, explain=explain, needs_model=needs)
        return json.dumps(new_body, ensure_ascii=False, separators=(",", ":")).encode(), [report]

    async def _rewrite_msearch(self, raw: bytes, index: str | None, explain: bool) -> tuple[bytes, list[dict | None]]:
        pairs = parse_msearch(raw)
        if pairs is None:
            return raw, []
        needs = any(isinstance(b, dict) and self.engine.needs_model(b) for _, b in pairs)
        rewritten, reports = await self._rewrite(self.engine.rewrite_msearch, pairs, index=index, explain=explain, needs_model=needs)
        lines = [json.dumps(item, ensure_ascii=False, separators=(",", ":")) for pair in rewritten for item in pair]
        return ("\n".join(lines) + "\n").encode(), reports


class CatchAll:
    """Outer middleware: an unexpected exception becomes a logged 500 (OpenSearch-style) unless a response already started."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:  # noqa: BLE001
            if not isinstance(exc, ProxyError):
                log.exception("unexpected error in the proxy for %s %s", scope.get("method"), scope.get("path"))
            if started:
                return
            status, body = to_response(exc)
            await JSONResponse(body, status_code=status)(scope, receive, send)


async def _proxy_error(request: Request, exc: Exception) -> Response:
    status, body = to_response(exc)
    if status >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, status, getattr(exc, "message", exc))
    return JSONResponse(body, status_code=status)


def create_app(engine: RewriteEngine, upstream: str, *, transport: httpx.AsyncBaseTransport | None = None) -> ASGIApp:
    """The proxy as an ASGI app. ``transport`` is for tests that run the upstream in-process."""
    config = engine.config.proxy
    proxy = Proxy(engine, config)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        timeout = httpx.Timeout(connect=5.0, read=config.upstream_timeout_s, write=config.upstream_timeout_s, pool=10.0)
        limits = httpx.Limits(max_connections=config.max_connections, max_keepalive_connections=config.max_connections)
        async with httpx.AsyncClient(base_url=upstream.rstrip("/"), timeout=timeout, limits=limits, transport=transport,
                                     follow_redirects=False, trust_env=False) as client:
            app.state.upstream = client
            await anyio.to_thread.run_sync(engine.warm_up)  # before the first connection is accepted (idempotent)
            yield

    app = Starlette(
        routes=[Route("/{path:path}", proxy.handle, methods=METHODS)],
        exception_handlers={ProxyError: _proxy_error},
        lifespan=lifespan,
    )
    app.state.proxy = proxy
    return CatchAll(app)
