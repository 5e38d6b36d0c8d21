"""The qrw proxy beside a floor: the least a Python proxy on this path can cost, on the same node and client.

Why: ``bench_proxy.py`` compares the proxy with OpenSearch alone. When the proxy misses a throughput
target, the question is whether more Python cuts could reach it at all. The floor answers it: a
60-line forwarder (uvloop + httptools, one keep-alive upstream connection per client connection, the
forwarded bytes of each client body looked up in a dict filled beforehand) that does nothing else: no
metrics, no checks, no error handling, no failover. No real proxy can cost less per request in
Python; what the floor still loses against OpenSearch alone is the cost of the extra process and its
loopback hop.

Method: the judged queries as ``{"query": {"multi_match": ...}, "size": 10}``; ``direct_rewritten`` sends
the rewritten bodies (what the proxy forwards on a cache hit, as ``bench_proxy.py`` builds them) to
OpenSearch; ``proxy`` sends the plain bodies to ``qrw proxy`` (every query precomputed in its cache);
``floor`` sends the plain bodies to the floor, which forwards the proxy's own bytes for them
(``jsonbody.dumps`` of the same rewrite). Blocks of ``--seconds`` per path, ``--rounds`` rounds in
alternating order, ``--concurrency`` keep-alive connections of ``loadclient.py``; per block the
requests/s, the upstream's and the proxy's CPU per request (``/proc``) and the machine's busy share
(``/proc/stat``). ``--upstream fake`` puts ``bench_proxy_cpu.py``'s instant upstream in place of
OpenSearch (then only the proxies' own CPU means anything).

Usage: ``.venv/bin/python benchmarks/bench_proxy_floor.py --keep-node bench:19350 [--workers 1] [--json-out F]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_proxy import cpu_seconds, throughput_block  # noqa: E402
from loadtest_proxy import (  # noqa: E402
    FIELDS,
    free_port,
    judged_queries,
    machine,
    opensearch_node,
    proxy_process,
    write_table,
)


def serve_floor(port: int, upstream_port: int, memo_file: str) -> None:
    """The floor proxy (run in its own process): client body -> forwarded bytes from ``memo_file``."""
    import httptools
    import uvloop

    memo = {bytes.fromhex(k): bytes.fromhex(v) for k, v in json.loads(Path(memo_file).read_text()).items()}
    host = b"127.0.0.1:%d" % upstream_port

    class Upstream(asyncio.Protocol):
        def __init__(self, down: Downstream) -> None:
            self.down = down
            self.parser = httptools.HttpResponseParser(self)
            self.headers: list[tuple[bytes, bytes]] = []
            self.chunks: list[bytes] = []

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_begin(self) -> None:
            self.headers, self.chunks = [], []

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))

        def on_body(self, body: bytes) -> None:
            self.chunks.append(body)

        def on_message_complete(self) -> None:
            head = b"HTTP/1.1 %d OK\r\n" % self.parser.get_status_code() + b"".join(
                n + b": " + v + b"\r\n" for n, v in self.headers) + b"\r\n"
            self.down.transport.write(head + b"".join(self.chunks))  # type: ignore[attr-defined]

    class Downstream(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)
            self.upstream: Upstream | None = None
            self.pending: list[bytes] = []
            asyncio.ensure_future(self.connect())

        async def connect(self) -> None:
            _, self.upstream = await asyncio.get_running_loop().create_connection(lambda: Upstream(self), "127.0.0.1", upstream_port)
            for request in self.pending:
                self.upstream.transport.write(request)  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_begin(self) -> None:
            self.chunks: list[bytes] = []
            self.url = b""

        def on_url(self, url: bytes) -> None:
            self.url += url

        def on_body(self, body: bytes) -> None:
            self.chunks.append(body)

        def on_message_complete(self) -> None:
            body = memo[b"".join(self.chunks)]
            request = (b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
                       % (self.url, host, len(body))) + body
            if self.upstream is None:
                self.pending.append(request)
            else:
                self.upstream.transport.write(request)  # type: ignore[attr-defined]

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Downstream, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def busy_jiffies() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return sum(values), values[3] + values[4]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1, help="qrw proxy worker processes")
    parser.add_argument("--paths", default="direct_rewritten,proxy,floor")
    parser.add_argument("--upstream", choices=["opensearch", "fake"], default="opensearch")
    parser.add_argument("--keep-node", metavar="NAME:PORT", default=None, help="as in bench_proxy.py")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--serve-floor", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_floor is not None:
        serve_floor(int(args.serve_floor[0]), int(args.serve_floor[1]), args.serve_floor[2])
        return 0
    paths = [p for p in args.paths.split(",") if p]
    if not (1 <= args.rounds <= 20 and 0.5 <= args.seconds <= 60 and 1 <= args.concurrency <= 64 and 1 <= args.workers <= 16
            and paths and set(paths) <= {"direct_rewritten", "proxy", "floor"}):
        parser.error("bounded: 1..20 rounds, 0.5..60 s blocks, 1..64 connections, 1..16 workers; paths from direct_rewritten,proxy,floor")
    keep = None
    if args.keep_node:
        name, _, port = args.keep_node.rpartition(":")
        keep = (name, int(port))

    import contextlib

    import uvloop
    from qrw.plugin import jsonbody
    from qrw.plugin.config import load_config
    from qrw.plugin.engine import RewriteEngine
    from qrw.plugin.table import TableRewriteModel

    from qrw.search import node as os_node

    loadavg_at_start = os.getloadavg()
    queries = judged_queries()
    children: list[subprocess.Popen] = []
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        if args.upstream == "fake":
            port = free_port()
            children.append(subprocess.Popen([sys.executable, str(Path(__file__).parent / "bench_proxy_cpu.py"), "--serve-upstream", str(port)]))
            upstream_url, upstream_pid = f"http://127.0.0.1:{port}", children[0].pid
        else:
            cfg = stack.enter_context(opensearch_node("floor", keep))
            upstream_url, port, upstream_pid = cfg.http_url, cfg.port, os_node._read_pid(cfg)
        table = write_table(queries, Path(tmp) / "rewrites.jsonl")
        (Path(tmp) / "queries.txt").write_text("\n".join(queries) + "\n")
        engine = RewriteEngine(load_config(None), TableRewriteModel.from_file(table))
        plain = {q: {"query": {"multi_match": {"query": q, "fields": FIELDS}}, "size": 10} for q in queries}
        rewritten = {q: engine.rewrite_body(plain[q], index="products")[0] for q in queries}
        engine.close()
        raw = {q: json.dumps(plain[q]).encode() for q in queries}
        (Path(tmp) / "memo.json").write_text(json.dumps({raw[q].hex(): jsonbody.dumps(rewritten[q]).hex() for q in queries}))
        bodies = {"direct_rewritten": {q: json.dumps(rewritten[q]).encode() for q in queries}, "proxy": raw, "floor": raw}
        floor_port = free_port()
        floor = subprocess.Popen([sys.executable, __file__, "--serve-floor", str(floor_port), str(port), str(Path(tmp) / "memo.json")])
        children.append(floor)
        time.sleep(1.0)
        config = f"proxy:\n  debug_networks: [127.0.0.1/32]\ncache:\n  precompute_file: {Path(tmp) / 'queries.txt'}\n"
        try:
            with proxy_process(upstream_url, table, workers=args.workers, config_text=config) as (proxy_url, proxy_proc):
                urls = {"direct_rewritten": upstream_url, "proxy": proxy_url, "floor": f"http://127.0.0.1:{floor_port}"}
                pids = {"direct_rewritten": None, "proxy": proxy_proc.pid, "floor": floor.pid}

                async def run() -> dict[str, list[dict]]:
                    for name in paths:  # warm every connection and cache
                        await throughput_block(urls[name], bodies[name], queries, args.concurrency, 2.0, 99)
                    blocks: dict[str, list[dict]] = {name: [] for name in paths}
                    for round_ in range(args.rounds):
                        for name in paths if round_ % 2 == 0 else paths[::-1]:
                            pid = pids[name]
                            jiffies, up_cpu, own_cpu = busy_jiffies(), cpu_seconds([upstream_pid]), cpu_seconds([pid]) if pid else 0.0
                            started = time.perf_counter()
                            rps, errors = await throughput_block(urls[name], bodies[name], queries, args.concurrency, args.seconds, round_)
                            requests = max(1.0, rps * (time.perf_counter() - started))
                            total, idle = (b - a for a, b in zip(jiffies, busy_jiffies()))
                            blocks[name].append({
                                "rps": round(rps, 1), "errors": errors,
                                "upstream_cpu_ms_per_request": round((cpu_seconds([upstream_pid]) - up_cpu) * 1000 / requests, 4),
                                "proxy_cpu_us_per_request": round(((cpu_seconds([pid]) - own_cpu) if pid else 0.0) * 1e6 / requests, 1),
                                "machine_busy": round(1 - idle / max(1, total), 3)})
                            print(f"round {round_ + 1} {name}: {blocks[name][-1]}", flush=True)
                    return blocks

                uvloop.install()
                blocks = asyncio.run(run())
        finally:
            for child in children:
                child.kill()
                child.wait()
    medians = {name: {key: statistics.median(b[key] for b in rows) for key in rows[0]} for name, rows in blocks.items()}
    report = {
        "machine": {**machine(), "loadavg_at_start": loadavg_at_start, "loadavg_at_end": os.getloadavg()},
        "method": {"upstream": args.upstream, "paths": paths, "rounds": args.rounds, "seconds": args.seconds,
                   "concurrency": args.concurrency, "proxy_workers": args.workers, "queries": len(queries),
                   "client": "benchmarks/loadclient.py (asyncio+httptools), one process"},
        "medians": medians,
        "throughput_ratio_vs_direct_rewritten": ({name: round(m["rps"] / medians["direct_rewritten"]["rps"], 3) for name, m in medians.items()}
                                                 if "direct_rewritten" in medians else None),
        "blocks": blocks,
    }
    print(json.dumps({k: report[k] for k in ("medians", "throughput_ratio_vs_direct_rewritten")}, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
