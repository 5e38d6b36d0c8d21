"""Proxy overhead on the cache-hit path vs direct OpenSearch: p50 and p99 as ratios, measured in one run.

Method (loopback only; the script starts its own OpenSearch node and ``qrw proxy`` process):

* the judged queries, each as ``{"query": {"multi_match": ...}, "size": 10}``; the proxy's model is a
  ``TableRewriteModel`` (one full-weight and one down-weighted rewrite per query, one dropped);
* a warm-up pass through the proxy fills its cache, so every measured proxy request is a cache hit;
* one sequential client (keep-alive), requests interleaved per query in a shuffled order:
  ``direct`` (original body straight to OpenSearch), ``direct_rewritten`` (the very body the proxy
  sends, computed by the same engine in this process, straight to OpenSearch) and ``proxy``
  (original body to the proxy);
* ratios: ``proxy / direct_rewritten`` is the proxy's own overhead (same work for OpenSearch);
  ``proxy / direct`` is what a caller sees end to end (the OR-merged query costs OpenSearch more).

Usage: ``.venv/bin/python benchmarks/bench_proxy.py [--passes 20] [--json-out figures.json]``
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadtest_proxy import FIELDS, judged_queries, machine, opensearch_node, percentile, proxy_process, write_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--passes", type=int, default=20, help="passes over the judged queries (samples per path = passes x queries)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not 1 <= args.passes <= 200:
        parser.error("bounded: 1..200 passes")

    from qrw.plugin.config import load_config
    from qrw.plugin.engine import RewriteEngine
    from qrw.plugin.table import TableRewriteModel

    queries = judged_queries()
    rng = random.Random(args.seed)
    samples: dict[str, list[float]] = {"direct": [], "direct_rewritten": [], "proxy": []}
    with tempfile.TemporaryDirectory() as tmp, opensearch_node("bench") as cfg:
        table = write_table(queries, Path(tmp) / "rewrites.jsonl")
        engine = RewriteEngine(load_config(None), TableRewriteModel.from_file(table))
        bodies = {q: {"query": {"multi_match": {"query": q, "fields": FIELDS}}, "size": 10} for q in queries}
        rewritten = {q: engine.rewrite_body(bodies[q], index="products")[0] for q in queries}
        engine.close()
        with proxy_process(cfg.http_url, table) as (proxy_url, _):
            with httpx.Client(base_url=cfg.http_url, timeout=30) as direct, httpx.Client(base_url=proxy_url, timeout=30) as proxy:
                for q in queries:  # warm-up: fill the proxy's cache, warm OpenSearch's caches for all three bodies
                    for client, body in ((proxy, bodies[q]), (direct, bodies[q]), (direct, rewritten[q])):
                        assert client.post("/products/_search", json=body).status_code == 200
                explain = proxy.post("/products/_search", json=bodies[queries[0]], headers={"X-QRW-Explain": "1"}).json()["qrw"]
                assert explain["model"]["origin"] == "cache", explain
                for _ in range(args.passes):
                    order = list(queries)
                    rng.shuffle(order)
                    for q in order:
                        paths = [("direct", direct, bodies[q]), ("direct_rewritten", direct, rewritten[q]), ("proxy", proxy, bodies[q])]
                        rng.shuffle(paths)
                        for name, client, body in paths:
                            content = json.dumps(body).encode()
                            started = time.perf_counter()
                            response = client.post("/products/_search", content=content, headers={"content-type": "application/json"})
                            elapsed = (time.perf_counter() - started) * 1000.0
                            if response.status_code != 200:
                                raise SystemExit(f"{name} answered {response.status_code}: {response.text[:300]}")
                            samples[name].append(elapsed)
                stats = httpx.get(f"{proxy_url}/_qrw/stats").json()
    figures = {name: {"p50_ms": round(percentile(v, 50), 3), "p99_ms": round(percentile(v, 99), 3), "n": len(v)} for name, v in samples.items()}
    ratios = {
        "proxy_vs_direct_rewritten": {k: round(figures["proxy"][f"{k}_ms"] / figures["direct_rewritten"][f"{k}_ms"], 3) for k in ("p50", "p99")},
        "proxy_vs_direct": {k: round(figures["proxy"][f"{k}_ms"] / figures["direct"][f"{k}_ms"], 3) for k in ("p50", "p99")},
    }
    report = {"machine": machine(), "runs": {"passes": args.passes, "queries": len(queries), "samples_per_path": len(samples["proxy"]),
                                              "client": "one sequential keep-alive httpx client, paths interleaved in shuffled order"},
              "latency": figures, "ratios": ratios, "proxy_cache": stats["cache"]}
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
