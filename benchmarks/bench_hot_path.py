"""The proxy's Python work per cache hit, without sockets: a steadier twin of ``bench_proxy_cpu.py``.

Why: ``bench_proxy_cpu.py`` measures the proxy process (Python, the event loop and the kernel's
loopback TCP together) and moves by ±10 % with whatever else runs on the shared cores. Here one
process drives the proxy's real server protocol (``http_server.ProxyHttpProtocol``) and upstream
client (``upstream._Connection``) through in-memory transports on a real uvloop loop: the client's
request bytes go into the protocol, the upstream request it writes is answered at once with a
recorded OpenSearch answer (~5 KB), and the answer written to the client is checked. Nothing but the
proxy's Python (and the loop's scheduling of its tasks) is measured; CPU time per request, median and
minimum of ``--rounds`` rounds (on a shared machine the minimum is the steadier of the two).

Method: the judged queries as ``{"query": {"multi_match": ...}, "size": 10}``, the proxy's model a
``TableRewriteModel`` with every query precomputed into the cache (every request is a cache hit),
``--concurrency`` client connections (each with its own upstream connection) sending in turn.

Usage: ``.venv/bin/python benchmarks/bench_hot_path.py [--requests 20000] [--rounds 5] [--compare-recovery] [--compare-respell] [--compare-announce]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_proxy_cpu import ANSWER  # noqa: E402
from loadtest_proxy import FIELDS, judged_queries, machine, write_table  # noqa: E402

UPSTREAM_ANSWER = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=UTF-8\r\ncontent-length: %d\r\n\r\n"
                   % len(ANSWER)) + ANSWER


class MemoryTransport(asyncio.Transport):
    """Records writes; ``on_write`` (when set) is called with each."""

    def __init__(self, peer: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False
        self.on_write = None
        self.peer = peer

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))
        if self.on_write is not None:
            self.on_write(data)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 9201)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def drive(proxy, config, queries: list[str], bodies: dict[str, bytes], concurrency: int, requests: int) -> float:
    """CPU seconds for ``requests`` cache-hit requests over ``concurrency`` connections."""
    from qrw.plugin.http_server import ProxyHttpProtocol
    from qrw.plugin.upstream import _Connection
    from uvicorn.server import ServerState

    loop = asyncio.get_running_loop()
    state = ServerState()
    node = proxy.upstreams.nodes[0]
    done = asyncio.Event()
    count = 0
    sent = 0

    def make_pair(i: int):
        up = _Connection(node)
        up_transport = MemoryTransport()
        up.connection_made(up_transport)
        node.open.add(up)
        node.idle.append(up)
        up_transport.on_write = lambda data, up=up: loop.call_soon(up.data_received, UPSTREAM_ANSWER)
        protocol = ProxyHttpProtocol(config, state, {}, loop)
        client = MemoryTransport(("127.0.0.1", 40000 + i))
        protocol.connection_made(client)
        return protocol, client

    pairs = [make_pair(i) for i in range(concurrency)]

    def send(i: int) -> None:
        nonlocal sent
        if sent >= requests:
            return
        body = bodies[queries[sent % len(queries)]]
        sent += 1
        pairs[i][0].data_received(b"POST /products/_search HTTP/1.1\r\nhost: 127.0.0.1:9201\r\n"
                                  b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))

    def answered(i: int, data: bytes) -> None:
        nonlocal count
        if not data.startswith(b"HTTP/1.1 200"):
            raise AssertionError(data[:300])
        count += 1
        if count >= requests:
            done.set()
        else:
            loop.call_soon(send, i)  # as the next request would arrive: after this answer is complete

    for i, (_, client) in enumerate(pairs):
        client.on_write = lambda data, i=i: answered(i, data)
    started = time.process_time()
    for i in range(concurrency):
        send(i)
    await done.wait()
    return time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--compare-recovery", action="store_true",
                        help="also run a proxy with zero-hit recovery off, rounds interleaved, and report the ratio "
                             "(recovery's cost on searches that find something: a byte search of each answer)")
    parser.add_argument("--compare-respell", action="store_true",
                        help="also run a proxy with index respelling off (respell.enabled: false), rounds interleaved, "
                             "and report the ratio (respelling's cost on cached searches: nothing once a body is remembered)")
    parser.add_argument("--compare-announce", action="store_true",
                        help="also run a proxy with proxy.announce_changes off, rounds interleaved, and report the ratio "
                             "(the cost of checking, on each search, whether to announce a respelling or a retry)")
    args = parser.parse_args(argv)
    if not (100 <= args.requests <= 1_000_000 and 1 <= args.rounds <= 50 and 1 <= args.concurrency <= 64):
        parser.error("bounded: 100..1,000,000 requests, 1..50 rounds, 1..64 connections")

    import uvloop
    from qrw.plugin.config import load_config
    from qrw.plugin.engine import RewriteEngine
    from qrw.plugin.proxy import create_app, serve_config
    from qrw.plugin.table import TableRewriteModel
    from qrw.plugin.upstream import Upstreams

    queries = judged_queries()
    bodies = {q: json.dumps({"query": {"multi_match": {"query": q, "fields": FIELDS}}, "size": 10}).encode() for q in queries}
    with tempfile.TemporaryDirectory() as tmp:
        table = write_table(queries, Path(tmp) / "rewrites.jsonl")
        (Path(tmp) / "queries.txt").write_text("\n".join(queries) + "\n")
        (Path(tmp) / "config.yaml").write_text(f"proxy:\n  debug_networks: [127.0.0.1/32]\ncache:\n  precompute_file: {Path(tmp) / 'queries.txt'}\n")
        engines = {"recovery on": RewriteEngine(load_config(Path(tmp) / "config.yaml"), TableRewriteModel.from_file(table))}
        if args.compare_recovery:
            engines["recovery off"] = RewriteEngine(load_config(Path(tmp) / "config.yaml", recovery={"zero_hits": False}),
                                                    TableRewriteModel.from_file(table))
        if args.compare_respell:
            engines["respell off"] = RewriteEngine(load_config(Path(tmp) / "config.yaml", respell={"enabled": False}),
                                                   TableRewriteModel.from_file(table))
        if args.compare_announce:
            engines["announce off"] = RewriteEngine(load_config(Path(tmp) / "config.yaml", proxy={"announce_changes": False}),
                                                    TableRewriteModel.from_file(table))
        for engine in engines.values():
            engine.warm_up()

    async def run() -> dict[str, list[float]]:
        setups = {}
        for name, engine in engines.items():
            proxy = create_app(engine, "http://127.0.0.1:9")
            proxy.upstreams = Upstreams(proxy.upstream_urls, proxy._settings(), observe=proxy.metrics.upstream)
            config = serve_config(proxy, "127.0.0.1", 9201)
            config.load()
            await drive(proxy, config, queries, bodies, args.concurrency, 2000)  # warm: every body remembered
            setups[name] = (proxy, config)
        seconds: dict[str, list[float]] = {name: [] for name in setups}
        for round_ in range(args.rounds):
            for name, (proxy, config) in setups.items():  # interleaved: each round runs every setup
                cpu = await drive(proxy, config, queries, bodies, args.concurrency, args.requests)
                seconds[name].append(cpu * 1e6 / args.requests)
                print(f"round {round_ + 1} ({name}): {seconds[name][-1]:.1f} µs per request", flush=True)
        return seconds

    uvloop.install()
    by_setup = asyncio.run(run())
    for engine in engines.values():
        engine.close()
    rounds = by_setup["recovery on"]
    report = {"machine": machine(), "method": {"requests_per_round": args.requests, "rounds": args.rounds,
                                               "concurrency": args.concurrency, "transports": "in memory, one process"},
              "cpu_us_per_request_median": round(statistics.median(rounds), 2),
              "cpu_us_per_request_min": round(min(rounds), 2), "rounds": [round(r, 2) for r in rounds]}
    if args.compare_recovery:
        off = by_setup["recovery off"]
        report["recovery_off"] = {"cpu_us_per_request_median": round(statistics.median(off), 2),
                                  "cpu_us_per_request_min": round(min(off), 2), "rounds": [round(r, 2) for r in off]}
        report["ratio_on_over_off_median"] = round(statistics.median(rounds) / statistics.median(off), 3)
    if args.compare_respell:
        off = by_setup["respell off"]
        report["respell_off"] = {"cpu_us_per_request_median": round(statistics.median(off), 2),
                                 "cpu_us_per_request_min": round(min(off), 2), "rounds": [round(r, 2) for r in off]}
        report["ratio_on_over_respell_off_median"] = round(statistics.median(rounds) / statistics.median(off), 3)
    if args.compare_announce:
        off = by_setup["announce off"]
        report["announce_off"] = {"cpu_us_per_request_median": round(statistics.median(off), 2),
                                  "cpu_us_per_request_min": round(min(off), 2), "rounds": [round(r, 2) for r in off]}
        report["ratio_on_over_announce_off_median"] = round(statistics.median(rounds) / statistics.median(off), 3)
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
