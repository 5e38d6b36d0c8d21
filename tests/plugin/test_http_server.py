"""The proxy's HTTP server protocol (``plugin/http_server.py``): a response's head and body go out in one
write, and the bytes a client receives are exactly what uvicorn would have sent in two."""

import asyncio
import socket

import pytest

from qrw.plugin.config import load_config
from qrw.plugin.engine import RewriteEngine
from qrw.plugin.http_server import CoalescingTransport
from qrw.plugin.proxy import create_app, serve_config
from qrw.plugin.table import TableRewriteModel

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str):
        return ("127.0.0.1", 1) if name == "peername" else None


def test_head_and_body_in_one_write():
    async def run():
        fake = FakeTransport()
        transport = CoalescingTransport(fake, asyncio.get_running_loop())
        transport.write(HEAD)
        assert fake.writes == []
        transport.write(b"{}")
        assert fake.writes == [HEAD + b"{}"]
        await asyncio.sleep(0)  # the pending flush finds nothing held
        assert fake.writes == [HEAD + b"{}"]
        assert transport.get_extra_info("peername") == ("127.0.0.1", 1)  # everything else is the real transport's

    asyncio.run(run())


def test_a_head_alone_goes_out_at_the_end_of_the_turn_and_bodies_at_once():
    async def run():
        fake = FakeTransport()
        transport = CoalescingTransport(fake, asyncio.get_running_loop())
        transport.write(HEAD)  # a streamed response whose first chunk is not ready yet
        await asyncio.sleep(0)
        assert fake.writes == [HEAD]
        transport.write(b"5\r\nhello\r\n")  # a chunk: not held
        assert fake.writes == [HEAD, b"5\r\nhello\r\n"]
        transport.write(HEAD)
        transport.close()  # closing sends what is held first
        assert fake.writes[-1] == HEAD and fake.closed

    asyncio.run(run())


def _exchange(port: int, request: bytes, expected_length: int) -> bytes:
    """Send ``request`` on a raw socket and read until ``expected_length`` bytes arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while len(received) < expected_length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


@pytest.mark.parametrize("path", [b"/idx/_search", b"/idx/_doc/1"])
def test_client_receives_exactly_the_nodes_head_and_body(raw_upstream, serve, path):
    """Search (buffered) and passthrough (streamed) answers: status line, the node's headers in order and
    case, its body; nothing added, nothing split off, and the connection stays usable."""
    body = b'{"took":1,"hits":{"hits":[]},"note":"\xc3\xa9"}'
    raw_upstream.response = (200, [(b"Content-Type", b"application/json; charset=UTF-8"), (b"X-Node", b"a")], body)
    engine = RewriteEngine(load_config(None), TableRewriteModel({}))
    request_body = b'{"query":{"match_all":{}}}'
    request = (b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
               % (path, len(request_body), request_body))
    expected = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=UTF-8\r\nx-node: a\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body))
    with serve(create_app(engine, raw_upstream.url)) as server:
        assert _exchange(server.port, request + request, 2 * len(expected)) == expected + expected
    engine.close()


def test_serve_config_uses_the_coalescing_protocol():
    config = serve_config(lambda scope, receive, send: None, "127.0.0.1", 1)
    config.load()
    assert config.http_protocol_class.__name__ == "ProxyHttpProtocol"
