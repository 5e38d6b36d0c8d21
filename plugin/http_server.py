"""The proxy's HTTP server protocol: uvicorn's httptools protocol with a direct path for searches.

Why: on a cache hit the proxy's own work is small (the remembered forwarded bytes, one exchange
with OpenSearch), and uvicorn's generic ASGI machinery around it was a large share of the proxy's
CPU per request (``benchmarks/bench_proxy_cpu.py``): a scope dict per request, an ``asyncio.Event``,
``receive``/``send`` message dicts, the proxy-headers middleware, a response head and body written
in two ``send`` calls (on loopback each ``send`` also pays for the receiver's TCP processing), a
keep-alive timer created and cancelled per request.

What: ``ProxyHttpProtocol`` is uvicorn's ``HttpToolsProtocol`` (parsing, pipelining, flow control,
keep-alive, shutdown, 400 on malformed HTTP all stay uvicorn's) with three changes:

* the direct path: a ``GET``/``POST`` to ``[/{index}]/_search`` or ``_msearch`` whose body has a
  ``content-length`` of at most 64 KiB (uvicorn's read high-water mark, so reading never pauses)
  is answered by ``Proxy.search_answer`` with the body in hand: no ASGI scope or messages, the
  answer written as one ``bytes``. Everything else (other routes, chunked or larger bodies,
  ``Expect: 100-continue``, %-escaped paths, ``X-Forwarded-For`` from a trusted host, which
  uvicorn's middleware would turn into another client address) goes through ASGI as before.
  The bytes on the wire are what uvicorn writes for the same answer (``encode_response``);
* writes of the ASGI path go through ``CoalescingTransport``: a head and the body that follows it
  in the same turn of the event loop leave in one ``send``;
* the keep-alive timer is armed once per idle period and re-armed when it fires early, instead
  of a timer created after every response and cancelled by the next request's first bytes.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE, STATUS_LINE, HttpToolsProtocol

HEAD_END = b"\r\n\r\n"
DIRECT_PATH = re.compile(rb"^/(?:(?P<index>[^/]+)/)?(?P<api>_search|_msearch)/?$")
"""``proxy.SEARCH_PATH`` on the raw path (a path with %-escapes takes the ASGI path, which unquotes it)."""
DIRECT_MAX_BODY = HIGH_WATER_LIMIT


class CoalescingTransport:
    """A transport whose writes within one turn of the event loop are sent as one."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:  # the body (or more) after a held head: all of it in one send, now
            self._held = None
            self._transport.write(held + data)
            return
        if bytes(data[-4:]) != HEAD_END:  # not a response head (a body, 100-continue is a head too): send now
            self._transport.write(data)
            return
        self._held = bytes(data)
        self._loop.call_soon(self.flush)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, pause/resume_reading, set_protocol, ...
        return getattr(self._transport, name)


class BadResponse(Exception):
    """An answer uvicorn would refuse to send (invalid header, body length not the declared one)."""


def encode_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes, *, keep_alive: bool,
                    default_headers: list[tuple[bytes, bytes]] = []) -> tuple[bytes, bool]:  # noqa: B006 - read only
    """(the bytes uvicorn's ``RequestResponseCycle.send`` writes for this whole answer to a GET/POST, whether
    the connection stays open), rule for rule. Raises ``BadResponse`` where uvicorn raises ``RuntimeError``."""
    content = [STATUS_LINE[status]]
    expected = 0
    chunked: bool | None = None
    has_close = False
    for name, value in (default_headers + headers) if default_headers else headers:
        if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
            raise BadResponse(f"invalid HTTP header {name!r}")
        name = name.lower()
        if name == b"content-length" and chunked is None:
            expected, chunked = int(value.decode()), False
        elif name == b"transfer-encoding" and value.lower() == b"chunked":
            expected, chunked = 0, True
        elif name == b"connection" and b"close" in [token.lower().strip() for token in value.split(b",")]:
            keep_alive, has_close = False, True
        content.extend((name, b": ", value, b"\r\n"))
    if not keep_alive and not has_close:
        content.append(b"connection: close\r\n")
    if chunked is None and status not in (204, 304):
        chunked = True
        content.append(b"transfer-encoding: chunked\r\n")
    content.append(b"\r\n")
    if chunked:
        content.append(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n")
    elif len(body) != expected:
        raise BadResponse(f"response body of {len(body)} bytes, content-length {expected}")
    else:
        content.append(body)
    return b"".join(content), keep_alive


class DirectCycle:
    """One directly answered request; stands in for uvicorn's ``RequestResponseCycle`` in the protocol
    (its ``body``, ``more_body``, ``message_event``, ``keep_alive``, ``response_complete``,
    ``disconnected`` and ``run_asgi`` are what the protocol uses), so pipelining and shutdown stay uvicorn's."""

    __slots__ = ("protocol", "method", "path", "target", "index", "api", "headers", "client_host", "keep_alive",
                 "body", "more_body", "response_complete", "disconnected", "on_response", "_waiter")

    def __init__(self, protocol: ProxyHttpProtocol, method: str, path: str, target: bytes, index: str | None,
                 api: str, headers: list[tuple[bytes, bytes]], client_host: str | None, keep_alive: bool) -> None:
        self.protocol = protocol
        self.method, self.path, self.target, self.index, self.api = method, path, target, index, api
        self.headers, self.client_host, self.keep_alive = headers, client_host, keep_alive
        self.body = bytearray()
        self.more_body = True
        self.response_complete = False
        self.disconnected = False
        self.on_response = protocol.on_response_complete
        self._waiter: asyncio.Future | None = None

    @property
    def message_event(self) -> DirectCycle:
        return self  # the protocol calls ``message_event.set()`` on more body, its end, and a lost connection

    def set(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done() and (not self.more_body or self.disconnected):
            waiter.set_result(None)

    async def run_asgi(self, app: Any) -> None:  # noqa: ARG002 - the signature the protocol calls
        protocol = self.protocol
        try:
            if self.more_body and not self.disconnected:
                self._waiter = protocol.loop.create_future()
                await self._waiter
            if self.disconnected:
                return
            status, headers, body = await protocol.proxy.search_answer(
                self.method, self.target, self.path, self.index, self.api, self.headers, self.client_host, bytes(self.body))
            if self.disconnected:
                return
            try:
                data, self.keep_alive = encode_response(status, headers, body, keep_alive=self.keep_alive,
                                                        default_headers=protocol.server_state.default_headers)
            except BadResponse:
                protocol.logger.exception("cannot send the answer to %s %s", self.method, self.path)
                protocol.transport.close()
                return
            protocol.write_whole(data)
            self.response_complete = True
            if not self.keep_alive:
                protocol.transport.close()
            self.on_response()
        except BaseException as exc:
            protocol.logger.error("Exception in the direct search path\n", exc_info=exc)
            protocol.transport.close()
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            self.on_response = _nothing


def _nothing() -> None:
    pass


class ProxyHttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with the direct search path and coalesced writes (``proxy.serve_config`` selects it)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        app = self.app
        while app is not None and not hasattr(app, "search_answer"):  # under uvicorn's middlewares
            app = getattr(app, "app", None)
        self.proxy = app
        self.direct = app is not None and self.limit_concurrency is None and not self.root_path
        self.direct_max_body = min(DIRECT_MAX_BODY, app.config.max_body_bytes) if app is not None else 0
        self.trusts_forwarded = self.config.proxy_headers
        self._raw_transport: asyncio.Transport | None = None
        self._idle_since = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._raw_transport = transport
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def write_whole(self, data: bytes) -> None:
        """A whole answer in one write, after anything the coalescing wrapper still holds."""
        self.transport.flush()  # type: ignore[attr-defined]
        self._raw_transport.write(data)  # type: ignore[union-attr]

    # -- the direct path
    def on_headers_complete(self) -> None:
        if not self.direct or self.expect_100_continue or not self._direct_request():
            self._scope()
            super().on_headers_complete()

    def _direct_request(self) -> bool:
        parser = self.parser
        method = parser.get_method()
        if method not in (b"POST", b"GET") or parser.should_upgrade():
            return False
        proxy = self.proxy
        if proxy.upstreams is None:  # not started yet (served without lifespan): the ASGI path starts it
            return False
        url = self.url
        query_at = url.find(b"?")
        raw_path = url if query_at < 0 else url[:query_at]
        match = DIRECT_PATH.match(raw_path)
        if match is None or b"%" in raw_path or b"#" in url or not url.isascii() or match["index"] == b"_qrw":
            return False  # (/_qrw/... is the proxy's own namespace)
        length = None
        for name, value in self.headers:
            if name == b"content-length":
                if length is not None or not value.isdigit():
                    return False
                length = int(value)
                if length > self.direct_max_body:  # larger: the ASGI path streams it (and refuses it over the limit)
                    return False
            elif name == b"transfer-encoding" or (name == b"x-forwarded-for" and self.trusts_forwarded):
                return False
        http_version = parser.get_http_version()
        index = match["index"]
        target = raw_path if query_at < 0 or query_at == len(url) - 1 else url  # as ``Proxy._target`` builds it
        cycle = DirectCycle(self, method.decode(), raw_path.decode("ascii"), target, index.decode("ascii") if index else None,
                            match["api"].decode(), self.headers, self.client[0] if self.client else None,
                            http_version != "1.0" and parser.should_keep_alive())
        if length is None:
            cycle.more_body = False  # no body: httptools still calls on_message_complete
        existing = self.cycle
        self.cycle = cycle  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            self._start_asgi_task(cycle, self.app)  # type: ignore[arg-type]
        else:  # pipelined behind an answer still in progress: queued, as uvicorn does
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))  # type: ignore[arg-type]
        return True

    def on_message_begin(self) -> None:
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = None  # type: ignore[assignment]

    def on_url(self, url: bytes) -> None:
        self.url += url

    def _scope(self) -> None:
        """uvicorn's scope, built in its ``on_message_begin``; here only for a request that takes the ASGI path."""
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }

    # -- keep-alive: one timer per idle period
    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = 0.0  # busy; an armed timer that fires now finds it so and lets the next answer re-arm it

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle_since = 0.0
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self._keep_alive_check)

    def _keep_alive_check(self) -> None:
        self.timeout_keep_alive_task = None
        if not self._idle_since:
            return
        remaining = self._idle_since + self.timeout_keep_alive - self.loop.time()
        if remaining > 0:
            self.timeout_keep_alive_task = self.loop.call_later(remaining, self._keep_alive_check)
        else:
            self.timeout_keep_alive_handler()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
