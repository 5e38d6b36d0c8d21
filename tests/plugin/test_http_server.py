"""The proxy's HTTP server protocol (``plugin/http_server.py``): a response's head and body go out in one
write, and the bytes a client receives are exactly what uvicorn would have sent in two."""

import asyncio
import json
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


# -- the direct search path (``ProxyHttpProtocol``): what could differ from the ASGI path it bypasses

def _reply_body(engine_table: dict | None = None):
    return RewriteEngine(load_config(None), TableRewriteModel(engine_table or {}))


def _read_answers(sock: socket.socket, count: int, timeout: float = 10.0) -> list[tuple[bytes, bytes]]:
    """``count`` HTTP answers (head, body) read off ``sock``, content-length or chunked framed."""
    sock.settimeout(timeout)
    buffer = b""
    answers = []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(answers)} answers"
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        lines = head.lower().split(b"\r\n")
        length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:")), None)
        if length is None:  # chunked: read up to the last chunk
            while b"0\r\n\r\n" not in buffer:
                buffer += sock.recv(65536)
            body, buffer = buffer.split(b"0\r\n\r\n", 1)
        else:
            while len(buffer) < length:
                chunk = sock.recv(65536)
                assert chunk
                buffer += chunk
            body, buffer = buffer[:length], buffer[length:]
        answers.append((head + b"\r\n\r\n", body))
    return answers


def _post(path: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n%s" % (
        path, extra, len(body), body)


@pytest.fixture()
def direct_calls(monkeypatch):
    """How many requests took the direct path (``Proxy.search_answer``)."""
    from qrw.plugin.proxy import Proxy

    calls = []
    original = Proxy.search_answer

    async def counting(self, *args):
        calls.append(args[2])
        return await original(self, *args)

    monkeypatch.setattr(Proxy, "search_answer", counting)
    return calls


def test_pipelined_searches_and_passthroughs_are_answered_in_order_on_one_upstream_connection(raw_upstream, serve, direct_calls):
    """Direct (search) and ASGI (passthrough) requests pipelined in one send: answers in request order,
    the client's exact bodies upstream, and every exchange on one kept-alive upstream connection."""
    raw_upstream.response = (200, [(b"content-type", b"application/json")], b'{"took":1}')
    engine = _reply_body()
    bodies = [b'{"query":{"match":{"title":"a"}}}', b'{"query":{"match":{"title":"bb"}}}', b'{"size":0}']
    requests = [_post(b"/idx/_search", bodies[0]), _post(b"/idx/_doc/1", b'{"x":1}'), _post(b"/_search?q=1", bodies[1]),
                _post(b"/idx/_msearch", b'{}\n' + bodies[2] + b'\n', b""), _post(b"/idx/_search", bodies[2])]
    with serve(create_app(engine, raw_upstream.url)) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"".join(requests))
        answers = _read_answers(sock, len(requests))
        sock.sendall(_post(b"/idx/_search", bodies[0]))  # the connection is still usable
        answers += _read_answers(sock, 1)
    engine.close()
    assert all(head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b'{"took":1}' for head, body in answers)
    seen = [r for r in raw_upstream.requests if not r["url"].startswith(b"/_cluster/health")]
    assert [r["url"] for r in seen] == [b"/idx/_search", b"/idx/_doc/1", b"/_search?q=1", b"/idx/_msearch", b"/idx/_search",
                                        b"/idx/_search"]
    assert [r["body"] for r in seen] == [bodies[0], b'{"x":1}', bodies[1], b'{}\n' + bodies[2] + b'\n', bodies[2], bodies[0]]
    assert len({r["peer"] for r in seen}) == 1  # keep-alive: one upstream connection for all six
    assert direct_calls == ["/idx/_search", "/_search", "/idx/_msearch", "/idx/_search", "/idx/_search"]


def test_direct_answer_bytes_equal_uvicorns_for_every_framing():
    """``encode_response`` against uvicorn's own ``RequestResponseCycle.send`` on the same answers."""
    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from qrw.plugin.http_server import BadResponse, encode_response

    cases = [
        (200, [(b"Content-Type", b"application/json"), (b"content-length", b"2")], b"{}", True),
        (404, [(b"content-type", b"application/json"), (b"content-length", b"2"), (b"X-A", b"1"), (b"x-a", b"2")], b"{}", True),
        (200, [(b"content-type", b"application/json")], b'{"chunked":true}', True),  # no length: uvicorn chunks it
        (200, [(b"content-type", b"text/plain")], b"", True),
        (200, [(b"content-length", b"2")], b"{}", False),  # HTTP/1.0 or Connection: close from the client
        (200, [(b"content-length", b"2"), (b"Connection", b"close")], b"{}", True),
        (503, [(b"content-length", b"0")], b"", True),
    ]

    async def uvicorns(status, headers, body, keep_alive):
        fake = FakeTransport()
        cycle = RequestResponseCycle(scope={"method": "POST", "http_version": "1.1"}, transport=fake, flow=FlowControl(fake),
                                     logger=None, access_logger=None, access_log=False, default_headers=[],
                                     message_event=asyncio.Event(), expect_100_continue=False, keep_alive=keep_alive,
                                     on_response=lambda: None)
        await cycle.send({"type": "http.response.start", "status": status, "headers": headers})
        await cycle.send({"type": "http.response.body", "body": body})
        return b"".join(fake.writes), cycle.keep_alive

    for status, headers, body, keep_alive in cases:
        assert encode_response(status, headers, body, keep_alive=keep_alive) == asyncio.run(
            uvicorns(status, headers, body, keep_alive)), headers
    with pytest.raises(BadResponse):
        encode_response(200, [(b"content-length", b"5")], b"{}", keep_alive=True)  # uvicorn: "shorter than Content-Length"
    with pytest.raises(BadResponse):
        encode_response(200, [(b"x-bad", b"a\x01b"), (b"content-length", b"0")], b"", keep_alive=True)


@pytest.mark.parametrize("case", ["large", "chunked", "expect", "escaped", "http10"])
def test_requests_outside_the_direct_path_are_answered_as_before(raw_upstream, serve, case, direct_calls):
    """Bodies over 64 KiB, chunked bodies, ``Expect: 100-continue`` and %-escaped paths take the ASGI path;
    HTTP/1.0 takes the direct one and gets ``connection: close``. All forward the client's exact bytes."""
    raw_upstream.response = (200, [(b"content-type", b"application/json")], b'{"took":2}')
    engine = _reply_body()
    body = b'{"query":{"match_all":{}},"pad":"' + b"x" * (70_000 if case == "large" else 10) + b'"}'
    if case == "chunked":
        request = (b"POST /idx/_search HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
                   + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    elif case == "expect":
        request = _post(b"/idx/_search", body, b"expect: 100-continue\r\n")
    elif case == "escaped":
        request = _post(b"/id%78/_search", body)
    elif case == "http10":
        request = _post(b"/idx/_search", body).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    else:
        request = _post(b"/idx/_search", body)
    with serve(create_app(engine, raw_upstream.url)) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request)
        if case == "expect":
            sock.settimeout(10)
            interim = b""
            while not interim.endswith(b"\r\n\r\n"):
                interim += sock.recv(1)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        head, answer = _read_answers(sock, 1)[0]
        if case == "http10":
            assert b"\r\nconnection: close\r\n" in head and sock.recv(10) == b""
    engine.close()
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and answer == b'{"took":2}'
    assert raw_upstream.requests[-1]["body"] == body
    assert raw_upstream.requests[-1]["url"] == (b"/id%78/_search" if case == "escaped" else b"/idx/_search")
    assert len(direct_calls) == (1 if case == "http10" else 0)


def test_a_node_dropping_a_search_gives_an_opensearch_shaped_502_and_the_connection_goes_on(raw_upstream, serve):
    raw_upstream.drop_when = lambda request: b"drop" in request["body"]
    engine = _reply_body()
    with serve(create_app(engine, raw_upstream.url)) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(_post(b"/idx/_search", b'{"query":{"match":{"title":"drop"}}}'))
        head, body = _read_answers(sock, 1)[0]
        assert head.startswith(b"HTTP/1.1 502 ")
        error = json.loads(body)
        assert error["status"] == 502 and error["error"]["root_cause"][0]["type"] == error["error"]["type"]
        raw_upstream.drop_when = None
        sock.sendall(_post(b"/idx/_search", b'{"query":{"match":{"title":"ok"}}}'))
        head, body = _read_answers(sock, 1)[0]  # the node is back (the next health check or the next try)
    engine.close()
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b'{"ok":true}'


def test_keep_alive_timer_closes_idle_connections_only(raw_upstream):
    """One timer per idle period: a connection used more often than the timeout stays open, an idle one closes."""
    import threading
    import time

    import uvicorn

    engine = _reply_body()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = serve_config(create_app(engine, raw_upstream.url), "127.0.0.1", port)
    config.timeout_keep_alive = 0.5
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        with socket.create_connection(("127.0.0.1", port)) as busy, socket.create_connection(("127.0.0.1", port)) as idle:
            idle.sendall(_post(b"/idx/_search", b"{}"))
            _read_answers(idle, 1)
            for _ in range(6):  # 1.5 s of use, every 0.25 s: never idle for the timeout
                busy.sendall(_post(b"/idx/_search", b"{}"))
                assert _read_answers(busy, 1)[0][0].startswith(b"HTTP/1.1 200")
                time.sleep(0.25)
            idle.settimeout(2)
            assert idle.recv(10) == b""  # closed by the proxy after 0.5 s idle
            time.sleep(1.0)
            busy.settimeout(2)
            assert busy.recv(10) == b""  # and this one too, once idle
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        engine.close()


def test_the_proxys_own_namespace_is_never_a_search(raw_upstream, serve, direct_calls):
    engine = _reply_body()
    with serve(create_app(engine, raw_upstream.url)) as server, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(_post(b"/_qrw/_search", b"{}"))
        head, body = _read_answers(sock, 1)[0]
    engine.close()
    assert head.startswith(b"HTTP/1.1 404 ") and json.loads(body)["status"] == 404
    assert direct_calls == [] and not [r for r in raw_upstream.requests if b"_qrw" in r["url"]]
