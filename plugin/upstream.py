"""Pooled keep-alive HTTP/1.1 connections to the OpenSearch nodes, with health checks and retries.

Why our own small client instead of httpx or aiohttp (``benchmarks/bench_upstream_clients.py``
measures the three on the same loopback exchange): a proxy must forward exactly what it was given
and hand back exactly what it got. httpx adds ``accept-encoding`` and ``user-agent``, decodes gzip
when asked for text and costs ~0.8 ms of CPU per exchange; aiohttp needs every automatic header
switched off and still costs ~5x what this does. Here a request is the client's method, target,
headers and body, written once; a response is the node's status, its raw header list (duplicate
``Set-Cookie`` lines stay separate, names keep their case) and its body bytes, parsed by
``httptools`` (the C parser uvicorn uses) and never decoded.

Failover: ``Upstreams`` spreads requests round-robin over the nodes that pass their health check
(``GET /_cluster/health?local=true`` every ``health_interval_s``: the node answers and has found its
cluster manager). A node that refuses a connection is marked down and the next one is tried, for
any request (nothing was sent). A node that drops a request after it was sent, or answers 503, is
tried again elsewhere only when the request is *retryable*: an idempotent read whose body the proxy
holds in memory (the caller decides, see ``proxy.is_idempotent_read``). A response that has started
streaming to the client cannot be retried.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Sequence

import httptools

from qrw.plugin.errors import ProxyOverloaded, UpstreamTimeout, UpstreamUnavailable

log = logging.getLogger("qrw.proxy")

Headers = list[tuple[bytes, bytes]]
FRAMING = (b"content-length", b"transfer-encoding")
READ_HIGH_WATER = 1 << 20
"""Bytes of a streamed response buffered before the node's socket is paused (back-pressure)."""


class ConnectFailed(Exception):
    """No connection could be opened: nothing was sent, any request may go to another node."""


class ConnectionDropped(Exception):
    """The connection broke after the request was (partly) sent, before the response was complete."""

    def __init__(self, message: str, *, reused: bool, received: bool) -> None:
        super().__init__(message)
        self.reused = reused
        self.received = received


# ---------------------------------------------------------------------------------------------
# One exchange (request -> response) on one connection
# ---------------------------------------------------------------------------------------------


class _Exchange:
    """httptools callbacks for one response; the body is buffered in chunks or streamed.

    ``whole``: the caller wants the complete answer in memory (searches), so ``head`` resolves only
    when the answer is complete: one wake-up of the waiting task per exchange instead of one for the
    head and more for the body, and reading never pauses (the caller holds it all anyway)."""

    def __init__(self, connection: _Connection, head_only: bool, whole: bool = False) -> None:
        self.connection = connection
        self.head_only = head_only
        self.whole = whole
        self.parser = httptools.HttpResponseParser(self)
        self.headers: Headers = []
        self.status = 0
        self.keep_alive = False
        self.headers_done = False
        self.head = connection.loop.create_future()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.done = False
        self.error: BaseException | None = None
        self.wakeup: asyncio.Future | None = None
        self.received = False
        self.until_eof = False

    # -- httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        framed = False
        for name, _ in self.headers:
            if name.lower() in FRAMING:
                framed = True
                break
        self.until_eof = not framed and self.status >= 200 and self.status not in (204, 304)
        self.headers_done = True
        if not self.whole and not self.head.done():
            self.head.set_result(None)
        if self.head_only:
            self._finish()

    def on_body(self, chunk: bytes) -> None:
        if self.done:
            return
        self.chunks.append(chunk)
        self.buffered += len(chunk)
        if self.whole:
            return
        if self.buffered > READ_HIGH_WATER:
            self.connection.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._finish()

    # -- state
    def feed(self, data: bytes) -> None:
        self.received = True
        if self.done:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(ConnectionDropped("the node switched protocols", reused=False, received=True))
        except httptools.HttpParserError as exc:
            self.fail(ConnectionDropped(f"invalid HTTP from the node: {exc}", reused=False, received=True))

    def _finish(self) -> None:
        self.done = True
        if self.whole and not self.head.done():
            self.head.set_result(None)
        self._wake()

    def _wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    def fail(self, exc: BaseException) -> None:
        if self.done:
            return
        self.error = exc
        self.done = True
        if not self.head.done():
            self.head.set_exception(exc)
            self.head.exception()  # mark retrieved: the waiter re-raises it
        self._wake()

    def eof(self, reused: bool) -> None:
        """The node closed the connection."""
        if self.headers_done and self.until_eof and not self.done:
            self._finish()  # a body delimited by the end of the connection
            return
        self.fail(ConnectionDropped("the node closed the connection", reused=reused, received=self.received))

    def body(self) -> bytes:
        """The whole body of a complete ``whole`` exchange."""
        chunks = self.chunks
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def next_chunk(self) -> bytes | None:
        while True:
            if self.chunks:
                chunk = self.chunks.popleft()
                self.buffered -= len(chunk)
                if self.buffered <= READ_HIGH_WATER // 2:
                    self.connection.resume_reading()
                return chunk
            if self.error is not None:
                raise self.error
            if self.done:
                return None
            self.wakeup = asyncio.get_running_loop().create_future()
            await self.wakeup
            self.wakeup = None


class _Connection(asyncio.Protocol):
    """A keep-alive connection to one node; carries one exchange at a time."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.exchange: _Exchange | None = None
        self.closed = False
        self.uses = 0
        self._write_ready: asyncio.Future | None = None
        self._reading_paused = False

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.exchange is None:
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self.exchange.feed(data)

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.exchange is not None:
            self.exchange.eof(reused=self.uses > 1)
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_exception(ConnectionDropped("connection lost while sending", reused=self.uses > 1, received=False))
            self._write_ready.exception()
        self.node.forget(self)

    def pause_writing(self) -> None:
        self._write_ready = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._write_ready is not None and not self._write_ready.done():
            self._write_ready.set_result(None)
        self._write_ready = None

    # -- flow control for streamed responses
    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()

    # -- use
    @property
    def usable(self) -> bool:
        return not self.closed and self.transport is not None and not self.transport.is_closing()

    def begin(self, head_only: bool, whole: bool = False) -> _Exchange:
        self.uses += 1
        self.exchange = _Exchange(self, head_only, whole)
        return self.exchange

    def writable(self) -> bool:
        """Open and not asking us to wait (``write`` would not suspend)."""
        return not self.closed and self.transport is not None and self._write_ready is None

    async def write(self, data: bytes) -> None:
        # ``acquire`` checked ``usable`` just before (no await in between); a transport closing since then
        # (the node's EOF, its connection_lost still to come) drops the bytes and the exchange ends in
        # ``ConnectionDropped`` from ``connection_lost``, as a failed write would.
        if self.closed or self.transport is None:
            raise ConnectionDropped("connection closed before sending", reused=self.uses > 1, received=False)
        self.transport.write(data)
        if self._write_ready is not None:
            await self._write_ready

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


# ---------------------------------------------------------------------------------------------
# The response handed to the proxy
# ---------------------------------------------------------------------------------------------


class UpstreamResponse:
    """Status and raw headers of a node's answer; the body is read whole or streamed, then ``release``d."""

    def __init__(self, node: Node, connection: _Connection, exchange: _Exchange, started: float) -> None:
        self.node = node
        self.connection = connection
        self.exchange = exchange
        self.started = started
        self._released = False

    @property
    def status(self) -> int:
        return self.exchange.status

    @property
    def headers(self) -> Headers:
        return self.exchange.headers

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    async def read(self) -> bytes:
        parts = []
        while (chunk := await self.exchange.next_chunk()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    async def stream(self) -> AsyncIterator[bytes]:
        try:
            while (chunk := await self.exchange.next_chunk()) is not None:
                yield chunk
        finally:
            self.release()

    def release(self) -> None:
        """Give the connection back (complete, keep-alive answer) or close it."""
        if self._released:
            return
        self._released = True
        exchange, connection = self.exchange, self.connection
        connection.exchange = None
        reusable = exchange.done and exchange.error is None and exchange.keep_alive and not exchange.until_eof and connection.usable
        self.node.give_back(connection, reusable)


# ---------------------------------------------------------------------------------------------
# Nodes and the cluster
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UpstreamSettings:
    connect_timeout_s: float = 5.0
    read_timeout_s: float | None = None
    max_connections: int = 256
    pool_timeout_s: float = 10.0
    health_interval_s: float = 1.0


class Node:
    """One OpenSearch node: address, pool of idle connections, health."""

    def __init__(self, url: str, settings: UpstreamSettings) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"upstream {url!r} must look like http://host:port")
        self.url = url.rstrip("/")
        self.host = parsed.hostname
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = ssl.create_default_context() if parsed.scheme == "https" else None
        self.host_header = parsed.netloc.rsplit("@", 1)[-1].encode("idna")
        self.prefix = parsed.path.rstrip("/").encode()
        self.settings = settings
        self.idle: list[_Connection] = []
        self.open: set[_Connection] = set()
        self.free = settings.max_connections
        """Connections that may still be taken; below 1, ``acquire`` queues in ``waiting`` (first come, first served)."""
        self.waiting: collections.deque[asyncio.Future] = collections.deque()
        self.healthy = True
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_check: float | None = None

    def mark_down(self, reason: str) -> None:
        if self.healthy:
            log.warning("upstream %s marked down: %s", self.url, reason)
        self.healthy = False
        self.last_error, self.last_error_at = reason, time.time()
        for connection in self.idle:
            connection.close()
        self.idle.clear()

    def mark_up(self) -> None:
        if not self.healthy:
            log.warning("upstream %s is back", self.url)
        self.healthy = True

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self), self.host, self.port, ssl=self.ssl),
                self.settings.connect_timeout_s,
            )
        except asyncio.TimeoutError as exc:
            raise ConnectFailed(f"connect to {self.url} timed out after {self.settings.connect_timeout_s}s") from exc
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {self.url}: {exc.strerror or exc}") from exc
        self.open.add(connection)
        return connection

    def take_idle(self) -> _Connection | None:
        """A pooled connection at once when a slot is free and an idle connection usable, else None (``acquire``)."""
        if self.free > 0 and not self.waiting:
            while self.idle:
                connection = self.idle.pop()
                if connection.usable:
                    self.free -= 1
                    return connection
        return None

    async def acquire(self) -> _Connection:
        if self.free > 0 and not self.waiting:
            self.free -= 1
        else:  # the pool is full: wait for a slot, with a timer
            await self._wait_for_slot()
        while self.idle:
            connection = self.idle.pop()
            if connection.usable:
                return connection
        try:
            return await self._connect()
        except BaseException:
            self.release_slot()
            raise

    async def _wait_for_slot(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        try:
            await asyncio.wait_for(waiter, self.settings.pool_timeout_s)
        except asyncio.TimeoutError:
            raise ProxyOverloaded(f"no free connection to {self.url} within {self.settings.pool_timeout_s}s "
                                  f"(max_connections {self.settings.max_connections})") from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release_slot()  # handed a slot while being cancelled: pass it on
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self.waiting.remove(waiter)

    def release_slot(self) -> None:
        """A slot is free again: handed to the first task still waiting, else counted as free."""
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1

    def give_back(self, connection: _Connection, reusable: bool) -> None:
        if reusable and self.healthy:
            self.idle.append(connection)
        else:
            connection.close()
        self.release_slot()

    def forget(self, connection: _Connection) -> None:
        self.open.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)

    def close(self) -> None:
        for connection in list(self.open):
            connection.close()
        self.idle.clear()

    def status(self) -> dict:
        return {"url": self.url, "healthy": self.healthy, "last_error": self.last_error,
                "last_error_at": self.last_error_at, "last_check": self.last_check,
                "open_connections": len(self.open), "idle_connections": len(self.idle)}


HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection", b"te",
    b"trailer", b"trailers", b"transfer-encoding", b"upgrade", b"host", b"expect",
})


NO_BODY = -1
CHUNKED = -2


def _head(method: str, target: bytes, node: Node, headers: Headers, length: int) -> bytes:
    """The request head: ``length`` >= 0 as content-length, ``NO_BODY`` (no framing header) or ``CHUNKED``."""
    lines = [b"%s %s%s HTTP/1.1\r\nhost: %s\r\n" % (method.encode(), node.prefix, target, node.host_header)]
    for name, value in headers:
        lines.append(b"%s: %s\r\n" % (name, value))
    if length >= 0:
        lines.append(b"content-length: %d\r\n" % length)
    elif length == CHUNKED:
        lines.append(b"transfer-encoding: chunked\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


@dataclasses.dataclass(frozen=True)
class StreamBody:
    """A request body forwarded as it arrives: ``length`` from the client's content-length, else chunked."""

    length: int | None
    chunks: Callable[[], AsyncIterator[bytes]]


Body = bytes | StreamBody | None


class Upstreams:
    """The set of nodes behind the proxy: choice, failover, health checks."""

    def __init__(self, urls: Sequence[str], settings: UpstreamSettings | None = None,
                 observe: Callable[[str, float], None] | None = None) -> None:
        if not urls:
            raise ValueError("at least one upstream node is needed")
        self.settings = settings or UpstreamSettings()
        self.nodes = [Node(url, self.settings) for url in urls]
        self._next = 0
        self._health_task: asyncio.Task | None = None
        self.observe = observe or (lambda event, value: None)
        """Callback for metrics: ("latency", seconds), ("retry", 1), ("down", 1)."""

    # -- lifecycle
    async def start(self) -> None:
        if self._health_task is None:
            await self.check_all()
            self._health_task = asyncio.create_task(self._health_loop())

    async def close(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
            try:
                await self._health_task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
            self._health_task = None
        for node in self.nodes:
            node.close()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.health_interval_s)
            try:
                await self.check_all()
            except Exception:  # noqa: BLE001 - the loop must outlive any single failure
                log.exception("health check failed")

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(node) for node in self.nodes))

    async def check(self, node: Node) -> bool:
        """One probe on a fresh connection: the node answers and has found its cluster manager."""
        node.last_check = time.time()
        timeout = max(1.0, min(5.0, self.settings.health_interval_s * 2))
        try:
            connection = await asyncio.wait_for(node._connect(), timeout)
        except (ConnectFailed, asyncio.TimeoutError) as exc:
            node.mark_down(str(exc) or "connect timeout")
            return False
        try:
            exchange = connection.begin(head_only=False)
            await connection.write(_head("GET", b"/_cluster/health?local=true", node, [], NO_BODY))
            await asyncio.wait_for(exchange.head, timeout)
            body = b""
            while (chunk := await asyncio.wait_for(exchange.next_chunk(), timeout)) is not None:
                body += chunk
        except (ConnectionDropped, asyncio.TimeoutError, OSError) as exc:
            node.mark_down(f"health check: {type(exc).__name__}: {exc}")
            return False
        finally:
            connection.exchange = None
            connection.close()
        if exchange.status != 200 or b'"discovered_cluster_manager":false' in body or b'"discovered_master":false' in body:
            node.mark_down(f"health check: HTTP {exchange.status} {body[:200].decode('utf-8', 'replace')}")
            return False
        node.mark_up()
        return True

    # -- choosing nodes
    def order(self) -> list[Node]:
        """Healthy nodes first, round-robin; down nodes last (tried only when every healthy one failed)."""
        count = len(self.nodes)
        if count == 1:
            return self.nodes  # the common single-node case: no lists built per request
        start = self._next
        self._next = (self._next + 1) % count
        rotated = [self.nodes[(start + i) % count] for i in range(count)]
        return [n for n in rotated if n.healthy] + [n for n in rotated if not n.healthy]

    @property
    def any_healthy(self) -> bool:
        return any(node.healthy for node in self.nodes)

    # -- requests
    async def _send_once(self, node: Node, method: str, target: bytes, headers: Headers, body: Body,
                         whole: bool = False) -> UpstreamResponse:
        connection = node.take_idle() or await node.acquire()
        started = time.perf_counter()
        exchange = connection.begin(method == "HEAD", whole)
        response = UpstreamResponse(node, connection, exchange, started)
        try:
            if isinstance(body, bytes) and connection.writable():  # the common case, without a coroutine per write
                connection.transport.write(_head(method, target, node, headers, len(body)) + body)  # type: ignore[union-attr]
            elif body is None:
                await connection.write(_head(method, target, node, headers, NO_BODY))
            elif isinstance(body, (bytes, bytearray, memoryview)):
                await connection.write(_head(method, target, node, headers, len(body)) + bytes(body))
            elif body.length is not None:
                await connection.write(_head(method, target, node, headers, body.length))
                async for chunk in body.chunks():
                    if chunk:
                        await connection.write(chunk)
            else:
                await connection.write(_head(method, target, node, headers, CHUNKED))
                async for chunk in body.chunks():
                    if chunk:
                        await connection.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await connection.write(b"0\r\n\r\n")
            read_timeout = self.settings.read_timeout_s
            if read_timeout is None:
                await exchange.head
            else:
                try:
                    await asyncio.wait_for(asyncio.shield(exchange.head), read_timeout)
                except asyncio.TimeoutError:
                    raise UpstreamTimeout(f"OpenSearch at {node.url} did not answer within {read_timeout}s") from None
        except BaseException:
            connection.close()
            response.release()
            raise
        return response

    async def _attempt(self, node: Node, method: str, target: bytes, headers: Headers, body: Body, *,
                       retryable: bool, read_body: bool, read_503: bool) -> tuple[UpstreamResponse, bytes | None]:
        for attempt in (1, 2):  # a second try on a fresh connection when a pooled one turned out stale
            try:
                if read_body and self.settings.read_timeout_s is None:  # the whole answer in one wait
                    response = await self._send_once(node, method, target, headers, body, whole=True)
                    try:
                        if response.exchange.error is not None:
                            raise response.exchange.error
                        return response, response.exchange.body()
                    finally:
                        response.release()
                response = await self._send_once(node, method, target, headers, body)
                data = await self._read(response) if read_body or (response.status == 503 and read_503) else None
                return response, data
            except ConnectionDropped as exc:
                if not (exc.reused and not exc.received and retryable and attempt == 1):
                    raise
        raise AssertionError("unreachable")

    async def request(self, method: str, target: bytes, headers: Headers, body: Body, *, retryable: bool,
                      buffer_response: bool = False) -> tuple[UpstreamResponse, bytes | None]:
        """Send to the first node that takes it; (response, whole body when ``buffer_response``).

        ``retryable``: the request is an idempotent read and its body (if any) is in memory, so a node
        that drops it or answers 503 is replaced by the next one. Any request goes to the next node
        when a connection cannot be opened (nothing was sent).
        """
        failures: list[str] = []
        candidates = self.order()
        for position, node in enumerate(candidates):
            last = position == len(candidates) - 1
            try:
                response, data = await self._attempt(node, method, target, headers, body, retryable=retryable,
                                                     read_body=buffer_response, read_503=retryable and not last)
            except ConnectFailed as exc:
                node.mark_down(str(exc))
                failures.append(str(exc))
                self.observe("retry", 1) if not last else None
                continue
            except ConnectionDropped as exc:
                failures.append(f"{node.url}: {exc}")
                if not retryable:
                    raise UpstreamUnavailable(f"OpenSearch at {node.url} dropped the connection: {exc}") from exc
                node.mark_down(str(exc))
                self.observe("retry", 1) if not last else None
                continue
            self.observe("latency", time.perf_counter() - response.started)
            if response.status == 503 and retryable and not last:
                failures.append(f"{node.url}: HTTP 503")
                node.mark_down("answered 503 to a read")
                self.observe("retry", 1)
                continue
            return response, data
        raise UpstreamUnavailable("cannot reach OpenSearch: " + "; ".join(failures[-len(self.nodes):]))

    async def _read(self, response: UpstreamResponse) -> bytes:
        try:
            if self.settings.read_timeout_s is None:
                return await response.read()
            try:
                return await asyncio.wait_for(response.read(), self.settings.read_timeout_s)
            except asyncio.TimeoutError:
                raise UpstreamTimeout(f"OpenSearch at {response.node.url} did not finish its answer within "
                                      f"{self.settings.read_timeout_s}s") from None
        finally:
            response.release()

    def status(self) -> list[dict]:
        return [node.status() for node in self.nodes]
