"""Load test of the rewriting proxy, bounded and on loopback only.

What it does (every piece is started by this script and stopped at the end):

1. starts its own OpenSearch node (``qrw.search.node``, a free loopback port, folder ``loadtest-<pid>``)
   and indexes the Icecat catalog under the alias ``products``;
2. picks the rewriter the proxy serves (``--model``): by default the tiny model (``qrw.trainer.tiny``:
   a random 2-layer Qwen2 with a BPE trained on catalog titles) exported to ONNX by the real
   ``qrw-export`` (fp32, CPU), so every rewrite comes from the torch-free ONNX runtime; or any
   exported folder (``--model DIR``); or ``--model table``, a precomputed table per judged query (a
   full-weight, a down-weighted and a dropped rewrite), which isolates the proxy from the model.
   Then starts ``qrw proxy`` as a separate process in front of the node;
3. phase ``steady``: C concurrent clients (one keep-alive connection each) send R requests each
   through the proxy: 80% ``_search`` (rewritten), 10% ``_msearch`` (2 searches), 10% ``_count``
   (pass-through). Every response is checked: status 200 and the expected JSON shape. Must show:
   0 errors, 0 lost (every request sent got a response);
4. phase ``restart``: the same load, and in the middle OpenSearch is stopped and started again
   (``node.stop``/``node.start``). Every request must get a correct response or a clean 502/503
   (an OpenSearch-style JSON error; for ``_msearch``, OpenSearch's own per-search error items with
   status 502/503 inside a 200 count as clean too); the proxy is never restarted and must serve correct answers
   again after OpenSearch is back. A client that gets a 502/503 waits 50 ms before its next request.

Usage::

    .venv/bin/python benchmarks/loadtest_proxy.py                    # 50 clients x 2,000 requests, both phases, tiny ONNX model
    .venv/bin/python benchmarks/loadtest_proxy.py --model ~/.cache/qrw/models/default-rewriter-...   # an exported folder
    .venv/bin/python benchmarks/loadtest_proxy.py --clients 5 --requests 100 --json-out figures.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from qrw.search import node as os_node

FIELDS = ["title^3", "name^2", "supplier^2", "short_description", "attributes"]


# ---------------------------------------------------------------------------------------------
# The rig: node, catalog, rewrite table, proxy process
# ---------------------------------------------------------------------------------------------


def judged_queries() -> list[str]:
    from qrw.eval.judgments import load_judgments
    from qrw.search.catalog import default_data_dir

    return list(load_judgments(default_data_dir() / "judgments" / "judgments.csv"))


def write_table(queries: list[str], path: Path) -> Path:
    lines = []
    for q in queries:
        lines.append(json.dumps({"query": q, "rewrites": [
            {"text": f"{q} product", "tag": "exact"},
            {"text": f"{q} accessory", "probabilities": {"exact": 0.2, "substitute": 0.6, "weak": 0.2}},
            {"text": "unrelated toaster", "tag": "irrelevant"},
        ]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def export_tiny_model(workdir: Path) -> Path:
    """Build the tiny test model (random weights, BPE on catalog titles) and export it with ``qrw-export``."""
    from qrw.export.cli import main as export_main
    from qrw.search.catalog import load_catalog
    from qrw.trainer.tiny import build_tiny_model

    checkpoint = build_tiny_model(workdir / "tiny", texts=[p.title for p in load_catalog()[:3000]])
    out = workdir / "tiny-onnx"
    if export_main(["--model", str(checkpoint), "--out", str(out), "--target", "cpu", "--quiet"]) != 0:
        raise RuntimeError("qrw-export failed on the tiny model")
    return out


def resolve_model(spec: str, workdir: Path, queries: list[str]) -> tuple[Path, str]:
    """``--model`` to (what the proxy loads, a description for the report)."""
    if spec == "tiny":
        return export_tiny_model(workdir), "tiny Qwen2 (2 layers, random weights) exported to ONNX fp32 by qrw-export"
    if spec == "table":
        return write_table(queries, workdir / "rewrites.jsonl"), "precomputed rewrite table (TableRewriteModel), no model"
    folder = Path(spec).expanduser()
    if not (folder / "manifest.json").is_file():
        raise SystemExit(f"--model {spec}: not an exported model folder (no manifest.json); use tiny, table or a qrw-export output")
    return folder, f"exported ONNX folder {folder}"


@contextlib.contextmanager
def opensearch_node(name: str, keep: tuple[str, int] | None = None):
    """A node with the catalog indexed as ``products``: a fresh one, deleted afterwards; or, with ``keep``
    (name, port), that node, started when it does not run, reused and left running (repeated benchmark
    runs then skip the start and the indexing, which does nothing when the catalog is unchanged)."""
    from qrw.search.catalog import load_catalog
    from qrw.search.connect import open_client
    from qrw.search.index import index_catalog

    if keep is not None:
        cfg = os_node.NodeConfig(name=keep[0], port=keep[1])
    else:
        cfg = os_node.NodeConfig(name=f"{name}-{os.getpid()}", port=os_node.free_port())
    started = time.monotonic()
    os_node.start(cfg)
    try:
        index_catalog(open_client(cfg.http_url), load_catalog(), "products", progress=False, url=cfg.http_url)
        print(f"node {cfg.name} on {cfg.http_url}: started and indexed in {time.monotonic() - started:.1f}s", flush=True)
        yield cfg
    finally:
        if keep is None:
            os_node.destroy(cfg)


BENCH_PROXY_CONFIG = "proxy:\n  debug_networks: [127.0.0.1/32]\n"
"""Benchmarks read /_qrw/stats and explain reports: debug surfaces, allowed from loopback only."""


@contextlib.contextmanager
def proxy_process(upstream: str | list[str], model: Path | None, config: Path | None = None, workers: int = 1,
                  config_text: str = BENCH_PROXY_CONFIG):
    """``qrw proxy`` as a separate process; waits until /_qrw/health answers. ``config_text`` is used when
    no ``config`` file is given."""
    port = free_port()
    upstreams = [upstream] if isinstance(upstream, str) else list(upstream)
    command = [sys.executable, "-m", "qrw.cli", "proxy", "--port", str(port), "--workers", str(workers)]
    for url_ in upstreams:
        command += ["--upstream", url_]
    if model is not None:
        command += ["--model", str(model)]
    config_file = None
    if config is None:
        config_file = tempfile.NamedTemporaryFile("w", prefix="qrw-proxy-", suffix=".yaml", delete=False)
        config_file.write(config_text)
        config_file.close()
        config = Path(config_file.name)
    command += ["--config", str(config)]
    log = tempfile.NamedTemporaryFile("w+", prefix="qrw-proxy-", suffix=".log", delete=False)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/_qrw/health", timeout=2).status_code in (200, 503):
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"proxy did not start:\n{log.read()[-3000:]}")
            time.sleep(0.2)
        yield url, process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
        log.close()
        os.unlink(log.name)
        if config_file is not None:
            os.unlink(config_file.name)


# ---------------------------------------------------------------------------------------------
# The load
# ---------------------------------------------------------------------------------------------


def _is_clean_error(status: int, payload: object) -> bool:
    return (
        status in (502, 503)
        and isinstance(payload, dict)
        and isinstance(payload.get("error"), dict)
        and "type" in payload["error"] and "reason" in payload["error"]
        and payload.get("status") == status
    )


def _is_clean_msearch(payload: object) -> bool:
    """Every item either a correct search or a clean 502/503 error item, and at least one error item."""
    responses = payload.get("responses") if isinstance(payload, dict) else None
    if not isinstance(responses, list) or len(responses) != 2:
        return False
    ok = [isinstance(r, dict) and isinstance(r.get("hits", {}).get("hits"), list) for r in responses]
    clean = [isinstance(r, dict) and _is_clean_error(r.get("status"), r) for r in responses]
    return all(a or b for a, b in zip(ok, clean)) and any(clean)


def _is_correct(kind: str, payload: object) -> bool:
    if not isinstance(payload, dict):
        return False
    if kind == "search":
        return isinstance(payload.get("hits", {}).get("hits"), list)
    if kind == "msearch":
        responses = payload.get("responses")
        return isinstance(responses, list) and len(responses) == 2 and all(isinstance(r.get("hits", {}).get("hits"), list) for r in responses)
    return isinstance(payload.get("count"), int)


class Tally:
    def __init__(self) -> None:
        self.sent = 0
        self.classes: Counter = Counter()
        self.statuses: Counter = Counter()
        self.latencies_ms: list[float] = []
        self.bad_examples: list[str] = []
        self.timeline: list[tuple[float, str]] = []

    def record(self, cls: str, status: int | None, ms: float, at: float, example: str = "") -> None:
        self.classes[cls] += 1
        self.statuses[status] += 1
        if cls == "correct":
            self.latencies_ms.append(ms)
        self.timeline.append((at, cls))
        if cls in ("bad", "lost") and len(self.bad_examples) < 10:
            self.bad_examples.append(example[:300])


async def client_loop(url: str, queries: list[str], requests: int, seed: int, tally: Tally, t0: float) -> None:
    rng = random.Random(seed)
    timeout = httpx.Timeout(60.0, connect=10.0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=httpx.Limits(max_connections=1)) as client:
        for _ in range(requests):
            roll = rng.random()
            query = rng.choice(queries)
            if roll < 0.8:
                kind, method, path = "search", "POST", "/products/_search"
                content = json.dumps({"query": {"multi_match": {"query": query, "fields": FIELDS}}, "size": 10, "_source": ["title"]})
                ctype = "application/json"
            elif roll < 0.9:
                kind, method, path = "msearch", "POST", "/_msearch"
                lines = [{"index": "products"}, {"query": {"match": {"title": query}}, "size": 3},
                         {"index": "products"}, {"query": {"match": {"title": rng.choice(queries)}}, "size": 3}]
                content = "".join(json.dumps(line) + "\n" for line in lines)
                ctype = "application/x-ndjson"
            else:
                kind, method, path = "count", "GET", "/products/_count"
                content, ctype = "", "application/json"
            tally.sent += 1
            started = time.perf_counter()
            try:
                response = await client.request(method, path, content=content or None, headers={"content-type": ctype})
            except httpx.HTTPError as exc:
                tally.record("lost", None, 0.0, time.monotonic() - t0, f"{kind}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)
                continue
            ms = (time.perf_counter() - started) * 1000.0
            try:
                payload = response.json()
            except ValueError:
                payload = None
            at = time.monotonic() - t0
            if response.status_code == 200 and _is_correct(kind, payload):
                tally.record("correct", 200, ms, at)
            elif response.status_code == 200 and kind == "msearch" and _is_clean_msearch(payload):
                # _msearch answers 200 and reports each search's failure inside (OpenSearch's own format)
                tally.record("clean_error", 200, ms, at)
                await asyncio.sleep(0.05)
            elif _is_clean_error(response.status_code, payload):
                tally.record("clean_error", response.status_code, ms, at)
                await asyncio.sleep(0.05)
            else:
                tally.record("bad", response.status_code, ms, at, f"{kind} {response.status_code}: {response.text[:200]}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def run_phase(url: str, queries: list[str], clients: int, requests: int, seed: int,
                    restart: tuple[os_node.NodeConfig, float] | None) -> dict:
    tally = Tally()
    t0 = time.monotonic()
    events: dict[str, float] = {}

    def bounce(cfg: os_node.NodeConfig, after_s: float) -> None:
        time.sleep(after_s)
        events["stop_begin"] = time.monotonic() - t0
        os_node.stop(cfg)
        events["stopped"] = time.monotonic() - t0
        time.sleep(2.0)
        os_node.start(cfg)
        events["started"] = time.monotonic() - t0

    bouncer = None
    if restart is not None:
        bouncer = threading.Thread(target=bounce, args=restart, daemon=True)
        bouncer.start()
    await asyncio.gather(*(client_loop(url, queries, requests, seed * 1000 + i, tally, t0) for i in range(clients)))
    wall = time.monotonic() - t0
    if bouncer is not None:
        bouncer.join()
    received = sum(tally.classes.values())
    result = {
        "clients": clients, "requests_per_client": requests, "sent": tally.sent, "answered": received - tally.classes["lost"],
        "classes": dict(tally.classes), "statuses": {str(k): v for k, v in tally.statuses.items()},
        "wall_s": round(wall, 2), "throughput_rps": round(received / wall, 1),
        "latency_ms_correct": {"p50": round(percentile(tally.latencies_ms, 50), 2), "p99": round(percentile(tally.latencies_ms, 99), 2),
                               "max": round(max(tally.latencies_ms, default=float("nan")), 2)},
        "bad_examples": tally.bad_examples,
    }
    if restart is not None:
        started_at = events.get("started", float("inf"))
        after = [cls for at, cls in tally.timeline if at > started_at]
        first_ok = next((at for at, cls in sorted(tally.timeline) if at > started_at and cls == "correct"), None)
        result["restart"] = {
            **{k: round(v, 2) for k, v in events.items()},
            "first_correct_after_start_s": round(first_ok - started_at, 2) if first_ok is not None else None,
            "after_restart": dict(Counter(after)),
            "clean_errors_during_outage": tally.classes["clean_error"],
        }
    return result


async def recovered(url: str) -> bool:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.post("/products/_search", json={"query": {"match": {"title": "laptop"}}, "size": 1})
        return response.status_code == 200 and bool(response.json()["hits"]["hits"])


def machine() -> dict:
    import importlib.metadata as md

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
        "opensearch": os_node.DEFAULT_VERSION,
        **{pkg: md.version(pkg) for pkg in ("uvicorn", "httptools", "uvloop", "orjson", "opensearch-py", "httpx")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000, help="requests per client")
    parser.add_argument("--phases", default="steady,restart")
    parser.add_argument("--restart-after", type=float, default=None, help="seconds into the restart phase (default: a third of the steady phase's wall time)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="tiny", help="tiny (default: the tiny model exported to ONNX), table, or an exported model folder")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (1 <= args.clients <= 200 and 1 <= args.requests <= 10_000):
        parser.error("bounded: 1..200 clients, 1..10,000 requests per client")
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    queries = judged_queries()
    report: dict = {"machine": machine(), "phases": {}}
    ok = True
    with tempfile.TemporaryDirectory() as tmp, opensearch_node("loadtest") as cfg:
        model, report["model"] = resolve_model(args.model, Path(tmp), queries)
        print(f"model: {report['model']}", flush=True)
        with proxy_process(cfg.http_url, model) as (url, process):
            steady_wall = None
            for phase in phases:
                restart = None
                if phase == "restart":
                    after = args.restart_after or max(5.0, (steady_wall or 60.0) / 3)
                    restart = (cfg, after)
                print(f"phase {phase}: {args.clients} clients x {args.requests} requests" + (f", OpenSearch stopped after {restart[1]:.0f}s" if restart else ""), flush=True)
                result = asyncio.run(run_phase(url, queries, args.clients, args.requests, args.seed, restart))
                if phase == "steady":
                    steady_wall = result["wall_s"]
                    ok &= result["classes"].get("correct", 0) == result["sent"]
                else:
                    result["recovered_without_proxy_restart"] = asyncio.run(recovered(url)) and process.poll() is None
                    ok &= result["classes"].get("bad", 0) == 0 and result["classes"].get("lost", 0) == 0 and result["recovered_without_proxy_restart"]
                report["phases"][phase] = result
                print(json.dumps(result, indent=2), flush=True)
            report["proxy_stats"] = httpx.get(f"{url}/_qrw/stats").json()
    report["passed"] = ok
    print(json.dumps({"machine": report["machine"], "model": report["model"], "passed": ok, "proxy_stats": report.get("proxy_stats")}, indent=2))
    if args.json_out:
        args.json_out.write_text(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
