"""A small, cheap HTTP/1.1 keep-alive client for the benchmarks (asyncio + httptools, loopback only).

Why not httpx: a load client that spends ~0.8 ms of CPU per request on 2 shared cores measures
itself. This one spends ~20 µs, keeps one connection per simulated client, sends exactly the bytes it
is given (no headers added beyond ``host`` and ``content-length``) and returns status, the raw header
list and the raw body bytes, so the same client can compare OpenSearch and the proxy byte for byte.
"""

from __future__ import annotations

import asyncio
import urllib.parse

import httptools


class ClientError(Exception):
    """The connection broke before a complete response arrived."""


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ClientError(f"bad response: {exc}"))

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(ClientError(f"connection lost: {exc}"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((bytes(name), bytes(value)))

    def on_headers_complete(self) -> None:
        if self.head_only and self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        self.body.append(bytes(body))

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def request(self, method: str, target: str, body: bytes | None = None,
                      headers: list[tuple[bytes, bytes]] | None = None, timeout: float | None = 120.0) -> Response:
        if self.closed or self.transport is None:
            raise ClientError("connection closed")
        self.headers, self.body = [], []
        self.head_only = method == "HEAD"
        self.parser = httptools.HttpResponseParser(self)
        self.waiter = asyncio.get_running_loop().create_future()
        lines = [f"{method} {target} HTTP/1.1\r\nhost: {self.host}\r\n".encode()]
        for name, value in headers or []:
            lines.append(name + b": " + value + b"\r\n")
        if body is not None:
            lines.append(b"content-length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        self.transport.write(b"".join(lines) + (body or b""))
        await asyncio.wait_for(self.waiter, timeout)
        return Response(self.parser.get_status_code(), self.headers, b"".join(self.body))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def connect(url: str) -> Connection:
    parsed = urllib.parse.urlsplit(url)
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(Connection, parsed.hostname, parsed.port or 80)
    connection.host = parsed.netloc
    return connection


class Client:
    """One simulated client: a keep-alive connection, re-opened when it breaks."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.connection: Connection | None = None

    async def request(self, method: str, target: str, body: bytes | None = None,
                      headers: list[tuple[bytes, bytes]] | None = None, timeout: float | None = 120.0) -> Response:
        if self.connection is None or self.connection.closed:
            self.connection = await connect(self.url)
        try:
            return await self.connection.request(method, target, body, headers, timeout)
        except BaseException:
            self.connection.close()
            self.connection = None
            raise

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
