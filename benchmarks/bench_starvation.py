"""Starvation: do clients that ask for long model deadlines slow everybody else down?

The attack (from the reliability review): clients put ``"ext": {"qrw": {"deadline_ms": 60000}}`` on
uncached searches. Before the fix, 40 such clients made other clients' uncached searches take 38 s
instead of 0.2 s. The proxy now caps a client's deadline at the server's ``chain.deadline_ms``, shares
identical calls, runs calls with live waiters first and falls back at once when the queue cannot
answer in time.

Method (loopback only; own OpenSearch node with the catalog and its own ``qrw proxy`` process):

* model: ``--model tiny`` (default: the tiny Qwen2 exported to ONNX by ``qrw-export``, served by the
  ONNX runtime), ``table`` (no model cost) or an exported folder; server deadline 150 ms (the default);
* victims: ``--victims`` clients, each sending ``--requests`` searches one after the other, every
  query new (a judged query plus a unique suffix), so every one needs the model;
* phases, interleaved ``alone, load, attack`` per round: ``alone`` the victims only; ``load``
  ``--attackers`` more clients send new queries back to back for as long as the victims run;
  ``attack`` the same clients, each query with ``deadline_ms: 60000``;
* figures: victims' p50/p95 per phase kind; ``attack / load`` of the p95 is what the deadline itself
  does to other clients (the issue's target: at most 2); ``attack / alone`` also contains the plain
  cost of 40 more busy clients on 2 shared cores. Attackers' own latency is reported too.

Usage: ``.venv/bin/python benchmarks/bench_starvation.py [--model tiny] [--json-out figures.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadclient import Client  # noqa: E402
from loadtest_proxy import FIELDS, judged_queries, machine, opensearch_node, percentile, proxy_process, resolve_model  # noqa: E402

JSON = [(b"content-type", b"application/json")]


def body(text: str, deadline_ms: int | None = None) -> bytes:
    payload: dict = {"query": {"multi_match": {"query": text, "fields": FIELDS}}, "size": 10}
    if deadline_ms is not None:
        payload["ext"] = {"qrw": {"deadline_ms": deadline_ms}}
    return json.dumps(payload).encode()


async def phase(url: str, queries: list[str], counter: itertools.count, victims: int, requests: int, attackers: int,
                deadline_ms: int | None = 60_000) -> dict:
    victim_ms: list[float] = []
    attack_ms: list[float] = []
    errors = 0
    done = asyncio.Event()

    def fresh() -> str:
        n = next(counter)
        return f"{queries[n % len(queries)]} v{n}"

    async def victim() -> None:
        nonlocal errors
        client = Client(url)
        try:
            for _ in range(requests):
                started = time.perf_counter()
                response = await client.request("POST", "/products/_search", body(fresh()), JSON)
                victim_ms.append((time.perf_counter() - started) * 1000.0)
                errors += response.status != 200
        finally:
            client.close()

    async def attacker() -> None:
        nonlocal errors
        client = Client(url)
        try:
            while not done.is_set():
                started = time.perf_counter()
                response = await client.request("POST", "/products/_search", body(fresh(), deadline_ms), JSON)
                attack_ms.append((time.perf_counter() - started) * 1000.0)
                errors += response.status != 200
        finally:
            client.close()

    attack_tasks = [asyncio.create_task(attacker()) for _ in range(attackers)]
    if attackers:
        await asyncio.sleep(1.0)  # let the attack fill the queue first
    await asyncio.gather(*(victim() for _ in range(victims)))
    done.set()
    await asyncio.gather(*attack_tasks)
    return {"victim_ms": victim_ms, "attack_ms": attack_ms, "errors": errors}


def summary(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": round(percentile(values, 50), 1), "p95_ms": round(percentile(values, 95), 1),
            "max_ms": round(max(values), 1) if values else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="tiny (default), table, or an exported model folder")
    parser.add_argument("--victims", type=int, default=5)
    parser.add_argument("--requests", type=int, default=40, help="requests per victim per phase")
    parser.add_argument("--attackers", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the three phases")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (1 <= args.victims <= 50 and 1 <= args.requests <= 1000 and 0 <= args.attackers <= 200 and 1 <= args.rounds <= 10):
        parser.error("bounded: 1..50 victims, 1..1000 requests, 0..200 attackers, 1..10 rounds")
    import uvloop

    queries = judged_queries()
    counter = itertools.count()
    kinds: dict[str, dict[str, list[float]]] = {kind: {"victim_ms": [], "attack_ms": []} for kind in ("alone", "load", "attack")}
    errors = 0
    with tempfile.TemporaryDirectory() as tmp, opensearch_node("starve") as cfg:
        model, description = resolve_model(args.model, Path(tmp), queries)
        with proxy_process(cfg.http_url, model) as (url, _):
            uvloop.install()
            asyncio.run(phase(url, queries, counter, 2, 5, 0))  # warm-up (model loaded, connections open)
            for round_ in range(args.rounds):
                for kind in ("alone", "load", "attack"):
                    result = asyncio.run(phase(url, queries, counter, args.victims, args.requests,
                                               0 if kind == "alone" else args.attackers, 60_000 if kind == "attack" else None))
                    kinds[kind]["victim_ms"] += result["victim_ms"]
                    kinds[kind]["attack_ms"] += result["attack_ms"]
                    errors += result["errors"]
                    print(f"round {round_ + 1} {kind}: victims {summary(result['victim_ms'])}", flush=True)
            stats = json.loads(__import__("httpx").get(f"{url}/_qrw/stats").text)
    alone, load, attack = (summary(kinds[k]["victim_ms"]) for k in ("alone", "load", "attack"))
    report = {
        "machine": machine(),
        "method": {"model": description, "server_deadline_ms": 150, "victims": args.victims, "requests_per_victim_per_phase": args.requests,
                   "attackers": args.attackers, "attacker_deadline_ms": 60_000, "rounds": args.rounds,
                   "order": "alone, load, attack per round; every query new (uncached)"},
        "victims_alone": alone,
        "victims_with_40_plain_clients": load,
        "victims_under_attack": attack,
        "p95_ratio_attack_vs_plain_load": round(attack["p95_ms"] / load["p95_ms"], 3),
        "p95_ratio_attack_vs_alone": round(attack["p95_ms"] / alone["p95_ms"], 3),
        "plain_clients": summary(kinds["load"]["attack_ms"]),
        "attackers": summary(kinds["attack"]["attack_ms"]),
        "errors": errors,
        "proxy": {k: stats[k] for k in ("cache", "model_failures", "model_call_ms")},
    }
    report["passed"] = report["p95_ratio_attack_vs_plain_load"] <= 2.0 and errors == 0
    print(json.dumps(report, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
