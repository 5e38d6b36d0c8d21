"""Plugin test helpers: a rewrite table and rules file on disk (the real TableRewriteModel and RuleSet),
and one fault-injecting model (timeouts, exceptions: faults a real model cannot be made to produce)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

TABLE = [
    {"query": "laptop", "rewrites": [
        {"text": "notebook", "tag": "exact"},
        {"text": "notebook computer", "probabilities": {"exact": 0.3, "substitute": 0.5, "weak": 0.2}},
        {"text": "laptop bag", "tag": "weak"},
        {"text": "Laptop", "tag": "exact"},
    ]},
    {"query": "hp toner", "rewrites": [
        {"text": "hp laserjet toner cartridge", "tag": "exact"},
        {"text": "canon toner", "tag": "exact"},
        {"text": "cheap hp toner", "tag": "exact"},
    ]},
    {"query": "usb stick", "rewrites": [{"text": "usb flash drive", "tag": "exact"}]},
]

RULES = """\
usb stick =>
    PIN: pendrive ^0.5
* =>
    BLOCK: /\\bcheap\\b/
"""


@pytest.fixture()
def table_file(tmp_path: Path) -> Path:
    path = tmp_path / "rewrites.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in TABLE) + "\n")
    return path


@pytest.fixture()
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.txt"
    path.write_text(RULES)
    return path


class FaultyModel:
    """Fault injection only: answers like a table but can be made slow or broken, and counts calls."""

    name = "faulty"

    def __init__(self, delay_s: float = 0.0, fail: bool = False, rewrites: dict | None = None) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.rewrites = rewrites or {"laptop": ["notebook"], "tablet": ["ipad"]}
        self.calls = 0
        self.lock = threading.Lock()

    def generate(self, queries, num_rewrites):
        with self.lock:
            self.calls += 1
        time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("injected model failure")
        return [list(self.rewrites.get(q, []))[:num_rewrites] for q in queries]

    def tag(self, pairs):
        return [{"exact": 1.0, "substitute": 0.0, "weak": 0.0, "irrelevant": 0.0} for _ in pairs]


@pytest.fixture()
def faulty_model_cls():
    return FaultyModel


class ServerThread:
    """Serve an ASGI app with uvicorn on a free loopback port in a background thread."""

    def __init__(self, app, port: int | None = None) -> None:
        import socket

        import uvicorn

        from qrw.plugin.proxy import serve_config

        if port is None:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(serve_config(app, "127.0.0.1", port))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture(scope="session")
def serve():
    return ServerThread


class RawUpstream:
    """A tiny real HTTP/1.1 server that records each request exactly as received (raw header list, body
    bytes) and answers what the test tells it. For checking what the proxy forwards byte for byte, and
    for upstream behaviours OpenSearch cannot be made to show (duplicate Set-Cookie, a slow answer)."""

    def __init__(self) -> None:
        import asyncio
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[dict] = []
        self.delay_s = 0.0
        self.drop_when = None
        """A predicate on the request: when true, the connection is closed without an answer (a node dying mid-request)."""
        self.response: tuple[int, list[tuple[bytes, bytes]], bytes] = (
            200, [(b"content-type", b"application/json; charset=UTF-8")], b'{"ok":true}')
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import asyncio

        import httptools

        outer = self

        class Handler(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport
                self.parser = httptools.HttpRequestParser(self)
                self.current = None

            def data_received(self, data):
                self.parser.feed_data(data)

            def on_message_begin(self):
                self.current = {"headers": [], "body": b"", "url": b"", "peer": self.transport.get_extra_info("peername")}

            def on_url(self, url):
                self.current["url"] += url

            def on_header(self, name, value):
                self.current["headers"].append((bytes(name), bytes(value)))

            def on_body(self, body):
                self.current["body"] += bytes(body)

            def on_message_complete(self):
                self.current["method"] = self.parser.get_method().decode()
                outer.requests.append(self.current)
                if outer.drop_when is not None and outer.drop_when(self.current):
                    self.transport.close()
                    return
                status, headers, body = outer.response
                head = b"HTTP/1.1 %d X\r\n" % status + b"".join(b"%s: %s\r\n" % h for h in headers)
                payload = head + b"content-length: %d\r\n\r\n" % len(body) + body
                if outer.delay_s:
                    asyncio.get_running_loop().call_later(outer.delay_s, self._write, payload)
                else:
                    self._write(payload)

            def _write(self, payload):
                if not self.transport.is_closing():
                    self.transport.write(payload)

        async def main():
            self._server = await asyncio.get_running_loop().create_server(Handler, "127.0.0.1", self.port)
            self._ready.set()
            await self._server.serve_forever()

        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(main())
        except (Exception, asyncio.CancelledError):  # noqa: BLE001 - stopped
            pass

    def __enter__(self) -> "RawUpstream":
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def header(self, request: dict, name: bytes) -> list[bytes]:
        return [v for k, v in request["headers"] if k.lower() == name]


@pytest.fixture()
def raw_upstream():
    with RawUpstream() as upstream:
        yield upstream


@pytest.fixture()
def async_search_and_msearch(opensearch_url):
    """``run(engine, index, body)``: one ``search`` and a one-item ``msearch`` of ``body`` through a fresh
    ``AsyncRewritingOpenSearch`` on ``engine``; returns (search answer, msearch answer)."""
    import asyncio

    from qrw.plugin.async_client import AsyncRewritingOpenSearch

    def run(engine, index, body):
        async def both():
            client = AsyncRewritingOpenSearch(hosts=[opensearch_url], engine=engine)
            try:
                return await client.search(index=index, body=body), await client.msearch(body=[{"index": index}, body])
            finally:
                await client.close()

        return asyncio.run(both())

    return run
