"""uvicorn's httptools protocol, sending a response's head and its body in one write.

Why: uvicorn writes the status line and headers as soon as the app sends ``http.response.start``
and the body in a second ``transport.write``: two ``send`` calls, two TCP segments and two wake-ups
of the client for every response. On the proxy's cache-hit path the whole answer is in hand when
the head goes out, and on loopback each ``send`` also pays for the receiver's TCP processing, so the
second write was a measurable share of the proxy's CPU per request (``benchmarks/bench_proxy_cpu.py``).

How: the transport is wrapped; a write that follows a held head within the same turn of the event
loop goes out together with it, at once. The head is held at most until the end of that turn
(``loop.call_soon``), so a streamed response whose first body chunk is not ready yet still sends
its head at once, as before. The bytes on the wire are exactly uvicorn's, in the same order.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_END = b"\r\n\r\n"


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


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` on a ``CoalescingTransport`` (``proxy.serve_config`` selects it)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
