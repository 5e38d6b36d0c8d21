"""The proxy's own CPU per cache-hit request, against an upstream that answers at once.

Why a second proxy benchmark: ``bench_proxy.py`` measures the proxy beside a real OpenSearch node on
the same 2 cores, which is what the issue's target is about, but there the proxy's CPU per request
moves by ±25 % from run to run with the machine's load (each request wakes the proxy on its own, and
other processes evict its caches). Here the upstream is a tiny HTTP server that answers every request
with the same recorded OpenSearch answer (a 10-hit search, ~5 KB) and costs almost nothing, so the
proxy is the only real work and its CPU seconds per request (``/proc``, the proxy's processes) are
steady to a few percent: the figure to compare two versions of the proxy with.

Method: the judged queries as ``{"query": {"multi_match": ...}, "size": 10}``, the proxy's model a
``TableRewriteModel`` with every query precomputed into the cache (every request is a cache hit), the
same load client as ``bench_proxy.py`` (``loadclient.py``, ``--concurrency`` keep-alive connections),
``--rounds`` blocks of ``--seconds``; the median of the blocks is reported.

Usage: ``.venv/bin/python benchmarks/bench_proxy_cpu.py [--workers 1] [--rounds 5] [--json-out figures.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_proxy import cpu_seconds, throughput_block  # noqa: E402
from loadtest_proxy import FIELDS, judged_queries, machine, proxy_process, write_table  # noqa: E402

HITS = [{"_index": "products-x", "_id": str(i), "_score": 10.0 - i,
         "_source": {"title": f"Product {i} notebook 15.6 inch", "supplier": "ACME",
                     "short_description": "A recorded-size product description " * 8, "attributes": "colour: black " * 6}}
        for i in range(10)]
ANSWER = json.dumps({"took": 3, "timed_out": False, "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                     "hits": {"total": {"value": 120, "relation": "eq"}, "max_score": 10.0, "hits": HITS}}).encode()
"""A search answer of the size OpenSearch gives for these requests (~5 KB)."""


def serve_instant_upstream(port: int) -> None:
    """An HTTP/1.1 keep-alive server answering every request with ``ANSWER`` (run in its own process)."""
    import httptools
    import uvloop

    response = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=UTF-8\r\ncontent-length: %d\r\n\r\n"
                % len(ANSWER)) + ANSWER

    class Upstream(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.parser = httptools.HttpRequestParser(self)

        def data_received(self, data: bytes) -> None:
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            self.transport.write(response)  # type: ignore[attr-defined]

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Upstream, "127.0.0.1", port)
        await server.serve_forever()

    uvloop.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=1, help="proxy worker processes")
    parser.add_argument("--rounds", type=int, default=5, help="blocks measured")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of one block")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--serve-upstream", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_upstream is not None:
        serve_instant_upstream(args.serve_upstream)
        return 0
    if not (1 <= args.workers <= 16 and 1 <= args.rounds <= 50 and 0.5 <= args.seconds <= 60 and 1 <= args.concurrency <= 64):
        parser.error("bounded: 1..16 workers, 1..50 rounds, 0.5..60 s blocks, 1..64 connections")

    import uvloop

    from qrw.search.node import free_port

    queries = judged_queries()
    port = free_port()
    upstream = subprocess.Popen([sys.executable, __file__, "--serve-upstream", str(port)])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            table = write_table(queries, Path(tmp) / "rewrites.jsonl")
            (Path(tmp) / "queries.txt").write_text("\n".join(queries) + "\n")
            bodies = {q: json.dumps({"query": {"multi_match": {"query": q, "fields": FIELDS}}, "size": 10}).encode() for q in queries}
            config = f"proxy:\n  debug_networks: [127.0.0.1/32]\ncache:\n  precompute_file: {Path(tmp) / 'queries.txt'}\n"
            with proxy_process(f"http://127.0.0.1:{port}", table, workers=args.workers, config_text=config) as (url, process):

                async def run() -> list[dict]:
                    await throughput_block(url, bodies, queries, args.concurrency, 1.0, 0)  # warm every connection
                    blocks = []
                    for round_ in range(args.rounds):
                        before, started = cpu_seconds([process.pid]), time.perf_counter()
                        rps, errors = await throughput_block(url, bodies, queries, args.concurrency, args.seconds, round_)
                        requests = rps * (time.perf_counter() - started)
                        blocks.append({"rps": round(rps, 1), "errors": errors,
                                       "proxy_cpu_us_per_request": round((cpu_seconds([process.pid]) - before) * 1e6 / max(1.0, requests), 1)})
                        print(f"round {round_ + 1}: {blocks[-1]}", flush=True)
                    return blocks

                uvloop.install()
                blocks = asyncio.run(run())
    finally:
        upstream.kill()
        upstream.wait()
    report = {
        "machine": machine(),
        "method": {"upstream": "instant HTTP/1.1 server (this script), one recorded ~5 KB search answer",
                   "queries": len(queries), "blocks": f"{args.rounds} x {args.seconds}s, {args.concurrency} connections",
                   "proxy_workers": args.workers, "client": "benchmarks/loadclient.py (asyncio+httptools), one process"},
        "proxy_cpu_us_per_request_median": statistics.median(b["proxy_cpu_us_per_request"] for b in blocks),
        "rps_median": statistics.median(b["rps"] for b in blocks),
        "errors": sum(b["errors"] for b in blocks),
        "blocks": blocks,
    }
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
