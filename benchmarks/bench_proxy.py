"""Proxy cost on the cache-hit path vs direct OpenSearch: latency (p50/p99) and throughput, one run, interleaved.

Method (loopback only; the script starts its own OpenSearch node and a ``qrw proxy`` process with
``--workers`` processes, default 2 for the 2-core machine):

* the judged queries, each as ``{"query": {"multi_match": ...}, "size": 10}``; the proxy's model is a
  ``TableRewriteModel`` (one full-weight and one down-weighted rewrite per query, one dropped), and
  ``cache.precompute_file`` fills every worker's cache at start, so every measured proxy request is
  a cache hit (checked through the explain report);
* three paths: ``direct`` (the original body straight to OpenSearch), ``direct_rewritten`` (the very
  body the proxy sends, computed by the same engine in this process, straight to OpenSearch: the
  same work for OpenSearch) and ``proxy`` (the original body to the proxy);
* the same client for all paths: ``loadclient.py`` (asyncio + httptools keep-alive connections,
  ~20 µs of CPU per request), in this process;
* latency: one connection per path, requests one at a time, paths interleaved per query in a
  shuffled order, ``--passes`` passes over the queries;
* throughput: ``--concurrency`` connections sending back to back for ``--seconds`` per block; blocks
  of the three paths in a shuffled order, ``--rounds`` rounds; requests/s per block, medians reported;
* CPU: during the throughput blocks, the CPU seconds of the proxy's processes and of the OpenSearch
  process (``/proc``) per request: on shared cores the throughput ratio is mostly the proxy's share
  of the CPU, this is its cost;
* ``--contend N``: N busy-looping processes at normal priority compete for the cores during the
  measurement (the proxy's CPU per request weighs more when the cores are contended);
* ratios: ``proxy / direct_rewritten`` is the proxy's own cost (the issue's target: p50 within
  +1 ms, throughput >= 0.8); ``proxy / direct`` is what a caller sees end to end (the OR-merged
  query costs OpenSearch more).

Usage: ``.venv/bin/python benchmarks/bench_proxy.py [--passes 20] [--rounds 4] [--workers 2] [--contend 0]
[--keep-node NAME:PORT] [--json-out figures.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadclient import Client  # noqa: E402
from loadtest_proxy import FIELDS, judged_queries, machine, opensearch_node, percentile, proxy_process, write_table  # noqa: E402

JSON = [(b"content-type", b"application/json")]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their children (from /proc)."""
    total = 0.0
    seen = set()
    stack = list(pids)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{pid}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (OSError, IndexError, ValueError):
            continue
    return total


@contextlib.contextmanager
def contention(count: int):
    """``count`` CPU-bound processes at normal priority for the whole measurement: the shared 2-core machine
    the issue's figures came from, made repeatable (other sessions' training and tests took the cores)."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


async def latency(urls: dict[str, str], bodies: dict[str, dict[str, bytes]], queries: list[str], passes: int,
                  rng: random.Random) -> dict[str, list[float]]:
    clients = {name: Client(url) for name, url in urls.items()}
    samples: dict[str, list[float]] = {name: [] for name in bodies}
    for _ in range(passes):
        order = list(queries)
        rng.shuffle(order)
        for q in order:
            paths = list(bodies)
            rng.shuffle(paths)
            for name in paths:
                started = time.perf_counter()
                response = await clients[name].request("POST", "/products/_search", bodies[name][q], JSON)
                elapsed = (time.perf_counter() - started) * 1000.0
                if response.status != 200:
                    raise SystemExit(f"{name} answered {response.status}: {response.body[:300]!r}")
                samples[name].append(elapsed)
    for client in clients.values():
        client.close()
    return samples


async def throughput_block(url: str, bodies: dict[str, bytes], queries: list[str], concurrency: int, seconds: float,
                           seed: int) -> tuple[float, int]:
    stop_at = time.perf_counter() + seconds
    done = errors = 0

    async def one(i: int) -> None:
        nonlocal done, errors
        client = Client(url)
        rng = random.Random(seed + i)
        try:
            while time.perf_counter() < stop_at:
                response = await client.request("POST", "/products/_search", bodies[rng.choice(queries)], JSON)
                if response.status == 200:
                    done += 1
                else:
                    errors += 1
        finally:
            client.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(concurrency)))
    return done / (time.perf_counter() - started), errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=20, help="latency: passes over the judged queries")
    parser.add_argument("--rounds", type=int, default=4, help="throughput: rounds of one block per path")
    parser.add_argument("--seconds", type=float, default=5.0, help="throughput: length of one block")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="proxy worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--contend", type=int, default=0, metavar="N",
                        help="N busy processes competing for the cores during the measurement (0: none)")
    parser.add_argument("--keep-node", metavar="NAME:PORT", default=None,
                        help="use (start if needed) the local node NAME on PORT and leave it running, for repeated runs")
    args = parser.parse_args(argv)
    keep = None
    if args.keep_node:
        name, _, port = args.keep_node.rpartition(":")
        if not name or not port.isdigit():
            parser.error("--keep-node takes NAME:PORT, e.g. bench:19350")
        keep = (name, int(port))
    if not (1 <= args.passes <= 200 and 1 <= args.rounds <= 20 and 0.5 <= args.seconds <= 60 and 1 <= args.concurrency <= 64
            and 0 <= args.contend <= 16):
        parser.error("bounded: 1..200 passes, 1..20 rounds, 0.5..60 s blocks, 1..64 connections, 0..16 contending processes")

    import uvloop

    from qrw.plugin.config import load_config
    from qrw.plugin.engine import RewriteEngine
    from qrw.plugin.table import TableRewriteModel

    loadavg_at_start = os.getloadavg()
    queries = judged_queries()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp, opensearch_node("bench", keep) as cfg:
        table = write_table(queries, Path(tmp) / "rewrites.jsonl")
        (Path(tmp) / "queries.txt").write_text("\n".join(queries) + "\n")
        engine = RewriteEngine(load_config(None), TableRewriteModel.from_file(table))
        plain = {q: {"query": {"multi_match": {"query": q, "fields": FIELDS}}, "size": 10} for q in queries}
        bodies = {
            "direct": {q: json.dumps(plain[q]).encode() for q in queries},
            "direct_rewritten": {q: json.dumps(engine.rewrite_body(plain[q], index="products")[0]).encode() for q in queries},
            "proxy": {q: json.dumps(plain[q]).encode() for q in queries},
        }
        engine.close()
        config = f"proxy:\n  debug_networks: [127.0.0.1/32]\ncache:\n  precompute_file: {Path(tmp) / 'queries.txt'}\n"
        with proxy_process(cfg.http_url, table, workers=args.workers, config_text=config) as (proxy_url, proxy_proc):
            from qrw.search import node as os_node

            proxy_pid, node_pid = proxy_proc.pid, os_node._read_pid(cfg)
            urls = {"direct": cfg.http_url, "direct_rewritten": cfg.http_url, "proxy": proxy_url}

            async def run() -> dict:
                warm = {name: Client(url) for name, url in urls.items()}
                for q in queries:  # warm OpenSearch's caches for all bodies, and every proxy worker's connections
                    for name in bodies:
                        for _ in range(2 if name == "proxy" else 1):
                            assert (await warm[name].request("POST", "/products/_search", bodies[name][q], JSON)).status == 200
                origins = set()
                for q in queries[:20]:
                    response = await warm["proxy"].request("POST", "/products/_search", bodies["proxy"][q],
                                                           JSON + [(b"x-qrw-explain", b"1")])
                    origins.add(json.loads(response.body)["qrw"]["model"]["origin"])
                assert origins == {"cache"}, origins
                for client in warm.values():
                    client.close()
                samples = await latency(urls, bodies, queries, args.passes, rng)
                blocks: dict[str, list[float]] = {name: [] for name in bodies}
                cpu: dict[str, dict[str, float]] = {name: {"proxy_s": 0.0, "opensearch_s": 0.0, "requests": 0} for name in bodies}
                errors = 0
                for round_ in range(args.rounds):
                    order = list(bodies)
                    rng.shuffle(order)
                    for name in order:
                        before = (cpu_seconds([proxy_pid]), cpu_seconds([node_pid]), time.perf_counter())
                        rps, failed = await throughput_block(urls[name], bodies[name], queries, args.concurrency, args.seconds,
                                                             args.seed + 1000 * round_)
                        cpu[name]["proxy_s"] += cpu_seconds([proxy_pid]) - before[0]
                        cpu[name]["opensearch_s"] += cpu_seconds([node_pid]) - before[1]
                        cpu[name]["requests"] += rps * (time.perf_counter() - before[2])
                        blocks[name].append(rps)
                        errors += failed
                        print(f"round {round_ + 1} {name}: {rps:.0f} requests/s", flush=True)
                return {"samples": samples, "blocks": blocks, "errors": errors, "cpu": cpu}

            uvloop.install()
            with contention(args.contend):
                result = asyncio.run(run())
            stats = json.loads(__import__("httpx").get(f"{proxy_url}/_qrw/stats").text)
    samples, blocks = result["samples"], result["blocks"]
    lat = {name: {"p50_ms": round(percentile(v, 50), 3), "p99_ms": round(percentile(v, 99), 3), "n": len(v)} for name, v in samples.items()}
    thr = {name: {"median_rps": round(statistics.median(v), 1), "blocks": [round(x, 1) for x in v]} for name, v in blocks.items()}
    report = {
        "machine": {**machine(), "loadavg_at_start": loadavg_at_start, "loadavg_at_end": os.getloadavg()},
        "method": {"passes": args.passes, "queries": len(queries), "latency_samples_per_path": len(samples["proxy"]),
                   "throughput": f"{args.rounds} rounds x {args.seconds}s blocks per path, {args.concurrency} connections, shuffled",
                   "proxy_workers": args.workers, "client": "benchmarks/loadclient.py (asyncio+httptools), one process",
                   "contending_processes": args.contend},
        "latency": lat,
        "latency_added_p50_ms": {"vs_direct_rewritten": round(lat["proxy"]["p50_ms"] - lat["direct_rewritten"]["p50_ms"], 3),
                                 "vs_direct": round(lat["proxy"]["p50_ms"] - lat["direct"]["p50_ms"], 3)},
        "throughput": thr,
        "throughput_ratio": {"vs_direct_rewritten": round(thr["proxy"]["median_rps"] / thr["direct_rewritten"]["median_rps"], 3),
                             "vs_direct": round(thr["proxy"]["median_rps"] / thr["direct"]["median_rps"], 3)},
        "cpu_ms_per_request": {name: {"proxy": round(c["proxy_s"] * 1000 / max(1, c["requests"]), 3),
                                      "opensearch": round(c["opensearch_s"] * 1000 / max(1, c["requests"]), 3)}
                               for name, c in result["cpu"].items()},
        "errors": result["errors"],
        "proxy_cache_one_worker": stats["cache"],
    }
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
