"""Failover: a 3-node cluster behind the proxy, one node SIGKILLed mid-run and restarted.

Method (loopback only; everything is started here and stopped at the end):

1. ``qrw.search.node.start_cluster``: 3 nodes on loopback ports (all cluster-manager eligible, 512 MB
   heap each); the catalog is indexed under ``products`` (one primary shard) with one replica,
   and the cluster waits for green;
2. ``qrw proxy`` with the three nodes as upstreams (``--workers``, default 2) and a rewrite table;
3. the expected answer of every request is taken through the proxy before the load: for each judged
   query a ``_search`` (rewritten), an ``_msearch`` of two searches and a ``_count``;
4. ``--clients`` clients (default 50) send ``--requests`` requests each (default 2,000): 80 %
   ``_search``, 10 % ``_msearch``, 10 % ``_count``. After ``--kill-after`` seconds the node that is
   cluster manager is killed with SIGKILL; ``--down-for`` seconds later it is started again and the
   script waits until the cluster has 3 nodes;
5. every response is classified: ``correct`` (200, no shard failures, the same total and the same set
   of hit ids as expected; for msearch every item so), ``bad`` (anything else that came back),
   ``lost`` (no response: a broken connection or a client timeout of 60 s).

Must show: 0 bad, 0 lost. Usage:
``.venv/bin/python benchmarks/failover_cluster.py [--clients 50] [--requests 2000] [--json-out figures.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadclient import Client, ClientError  # noqa: E402
from loadtest_proxy import FIELDS, judged_queries, machine, percentile, proxy_process, write_table  # noqa: E402

from qrw.search import node as os_node  # noqa: E402

JSON = [(b"content-type", b"application/json")]
NDJSON = [(b"content-type", b"application/x-ndjson")]


def requests_for(queries: list[str]) -> list[tuple[str, str, bytes, list]]:
    """(kind, target, body, headers) for every request the clients draw from."""
    out = []
    for i, q in enumerate(queries):
        search = json.dumps({"query": {"multi_match": {"query": q, "fields": FIELDS}}, "size": 10, "_source": False}).encode()
        out.append(("search", "/products/_search", search, JSON))
        other = queries[(i + 1) % len(queries)]
        lines = [{"index": "products"}, {"query": {"match": {"all_text": q}}, "size": 5, "_source": False},
                 {}, {"query": {"match": {"title": other}}, "size": 5, "_source": False}]
        out.append(("msearch", "/products/_msearch", ("\n".join(json.dumps(x) for x in lines) + "\n").encode(), NDJSON))
        out.append(("count", "/products/_count", json.dumps({"query": {"match": {"all_text": q}}}).encode(), JSON))
    return out


def signature(kind: str, status: int, body: bytes):
    """What must not change between two correct answers (None: not a correct answer)."""
    if status != 200:
        return None
    payload = json.loads(body)
    if kind == "count":
        return None if payload["_shards"]["failed"] else ("count", payload["count"])
    items = payload["responses"] if kind == "msearch" else [payload]
    out = []
    for item in items:
        if item.get("status", 200) != 200 or item["_shards"]["failed"]:
            return None
        hits = item["hits"]["hits"]
        scores = tuple(round(h["_score"] or 0.0, 3) for h in hits)
        # Hits tied at the last score may differ between a primary and its replica (equal scores are
        # ordered by internal doc id); every hit scoring above the last one must be the same.
        above = frozenset(h["_id"] for h, score in zip(hits, scores) if score > scores[-1])
        out.append((item["hits"]["total"]["value"], scores, above))
    return tuple(out)


class Tally:
    def __init__(self) -> None:
        self.classes: Counter = Counter()
        self.by_kind: Counter = Counter()
        self.latency: list[float] = []
        self.bad_examples: list[dict] = []
        self.timeline: list[tuple[float, str]] = []

    def record(self, kind: str, cls: str, ms: float, at: float, detail: str = "") -> None:
        self.classes[cls] += 1
        self.by_kind[f"{kind}:{cls}"] += 1
        self.latency.append(ms)
        if cls != "correct":
            self.timeline.append((round(at, 2), cls))
            if len(self.bad_examples) < 20:
                self.bad_examples.append({"kind": kind, "class": cls, "at_s": round(at, 2), "detail": detail[:400]})


async def client_loop(url: str, plan: list[tuple[str, str, bytes, list]], expected: dict, count: int, seed: int,
                      tally: Tally, t0: float) -> None:
    rng = random.Random(seed)
    client = Client(url)
    weights = [8 if kind == "search" else 1 for kind, *_ in plan]
    try:
        for _ in range(count):
            index = rng.choices(range(len(plan)), weights)[0]
            kind, target, body, headers = plan[index]
            started = time.perf_counter()
            try:
                response = await client.request("POST", target, body, headers, timeout=60)
            except (ClientError, OSError, asyncio.TimeoutError) as exc:
                tally.record(kind, "lost", (time.perf_counter() - started) * 1000, time.monotonic() - t0, f"{type(exc).__name__}: {exc}")
                continue
            ms = (time.perf_counter() - started) * 1000
            try:
                ok = signature(kind, response.status, response.body) == expected[index]
            except (ValueError, KeyError, TypeError):
                ok = False
            detail = ""
            if not ok:
                try:
                    detail = f"{response.status} expected {expected[index]} got {signature(kind, response.status, response.body)}"
                except (ValueError, KeyError, TypeError):
                    detail = f"{response.status} {response.body[:300]!r}"
            tally.record(kind, "correct" if ok else "bad", ms, time.monotonic() - t0, detail)
    finally:
        client.close()


def cluster_manager(members: list[os_node.NodeConfig]) -> os_node.NodeConfig:
    import httpx

    for member in members:
        try:
            name = httpx.get(f"{member.http_url}/_cat/cluster_manager?h=node", timeout=5).text.strip()
        except httpx.HTTPError:
            continue
        for candidate in members:
            if candidate.name == name:
                return candidate
    return members[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000, help="requests per client")
    parser.add_argument("--kill-after", type=float, default=20.0, help="seconds into the load")
    parser.add_argument("--down-for", type=float, default=10.0, help="seconds the node stays dead")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= 200 and 1 <= args.requests <= 10_000):
        parser.error("bounded: 1..200 clients, 1..10,000 requests per client")
    import httpx
    import uvloop

    from qrw.search.catalog import load_catalog
    from qrw.search.connect import open_client
    from qrw.search.index import index_catalog

    queries = judged_queries()
    base = os_node.NodeConfig(name=f"failover-{os.getpid()}", port=os_node.free_port_range(3))
    members = os_node.cluster_members(base, 3)
    events: dict = {}
    started_at = time.monotonic()
    try:
        os_node.start_cluster(base, 3)
        print(f"cluster up in {time.monotonic() - started_at:.0f}s: {[m.http_url for m in members]}", flush=True)
        client = open_client(members[0].http_url)
        result = index_catalog(client, load_catalog(), "products", progress=False, url=members[0].http_url)
        client.indices.put_settings(index=result["index"], body={"index": {"number_of_replicas": 1}})
        httpx.get(f"{members[0].http_url}/_cluster/health?wait_for_status=green&timeout=300s", timeout=320).raise_for_status()
        shards = client.cat.shards(index=result["index"], format="json")
        print(f"indexed {result['documents']} documents; shards: {[(s['shard'], s['prirep'], s['node']) for s in shards]}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            table = write_table(queries, Path(tmp) / "rewrites.jsonl")
            (Path(tmp) / "q.txt").write_text("\n".join(queries) + "\n")
            config = f"proxy:\n  debug_networks: [127.0.0.1/32]\n  health_interval_s: 0.5\ncache:\n  precompute_file: {Path(tmp) / 'q.txt'}\n"
            with proxy_process([m.http_url for m in members], table, workers=args.workers, config_text=config) as (url, process):
                plan = requests_for(queries)
                expected = {}
                with httpx.Client(base_url=url, timeout=60) as warm:
                    for i, (kind, target, body, headers) in enumerate(plan):
                        response = warm.post(target, content=body, headers=dict(headers))
                        expected[i] = signature(kind, response.status_code, response.content)
                        assert expected[i] is not None, (kind, response.text[:300])
                uvloop.install()
                tally = Tally()

                def chaos(t0: float) -> None:
                    time.sleep(args.kill_after)
                    victim = cluster_manager(members)
                    events["killed"] = {"node": victim.name, "at_s": round(time.monotonic() - t0, 2), "pid": os_node.kill(victim)}
                    print(f"SIGKILL {victim.name} (cluster manager) at {events['killed']['at_s']}s", flush=True)
                    time.sleep(args.down_for)
                    events["restart_at_s"] = round(time.monotonic() - t0, 2)
                    os_node.launch(victim)
                    os_node.wait_healthy(victim, nodes=3)
                    events["rejoined_at_s"] = round(time.monotonic() - t0, 2)
                    print(f"{victim.name} back in the cluster at {events['rejoined_at_s']}s", flush=True)

                async def load() -> float:
                    t0 = time.monotonic()
                    thread = threading.Thread(target=chaos, args=(t0,), daemon=True)
                    thread.start()
                    await asyncio.gather(*(client_loop(url, plan, expected, args.requests, args.seed + c, tally, t0)
                                           for c in range(args.clients)))
                    await asyncio.to_thread(thread.join, 600)
                    return time.monotonic() - t0

                wall = asyncio.run(load())
                health = httpx.get(f"{url}/_qrw/health").json()
                stats = httpx.get(f"{url}/_qrw/stats").json()
                metrics = httpx.get(f"{url}/_qrw/metrics").text
    finally:
        os_node.destroy_cluster(base, 3)
    retries = next((line.split()[-1] for line in metrics.splitlines() if line.startswith("qrw_upstream_retries_total")), "0")
    sent = args.clients * args.requests
    report = {
        "machine": machine(),
        "method": {"nodes": 3, "replicas": 1, "clients": args.clients, "requests_per_client": args.requests,
                   "mix": "80% _search (rewritten), 10% _msearch, 10% _count", "proxy_workers": args.workers,
                   "kill": "SIGKILL of the elected cluster manager", "kill_after_s": args.kill_after, "down_for_s": args.down_for},
        "events": events,
        "sent": sent,
        "classes": dict(tally.classes),
        "by_kind": dict(tally.by_kind),
        "wall_s": round(wall, 1),
        "requests_per_s": round(sent / wall, 1),
        "latency_ms": {"p50": round(percentile(tally.latency, 50), 1), "p99": round(percentile(tally.latency, 99), 1),
                       "max": round(max(tally.latency), 1)},
        "upstream_retries": float(retries),
        "proxy_health_at_end": health,
        "proxy_upstreams": stats.get("upstreams"),
        "not_correct_examples": tally.bad_examples,
    }
    report["passed"] = tally.classes.get("bad", 0) == 0 and tally.classes.get("lost", 0) == 0 and tally.classes.get("correct", 0) == sent
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
