"""/_qrw/health, Prometheus metrics, several upstream nodes with failover, and several worker processes."""

import concurrent.futures
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from qrw.plugin.config import load_config
from qrw.plugin.engine import RewriteEngine
from qrw.plugin.proxy import create_app, is_idempotent_read
from qrw.plugin.table import TableRewriteModel

pytestmark = pytest.mark.opensearch

EXACT = {"exact": 1.0, "substitute": 0.0, "weak": 0.0, "irrelevant": 0.0}
TABLE = {"chromebook": [("notebook", EXACT)]}
LOOPBACK = {"debug_networks": ["127.0.0.1/32"]}
SEARCH = {"query": {"match": {"title": "chromebook"}}, "size": 1}


def dead_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def metric(text: str, name: str, **labels) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" ([0-9.e+-]+)"
    match = re.search(r"^" + pattern + "$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_health_says_model_upstream_and_last_error(opensearch_url, indexed_catalog, serve):
    engine = RewriteEngine(load_config(None, proxy=LOOPBACK), TableRewriteModel(TABLE))
    empty = RewriteEngine(load_config(None, proxy=LOOPBACK), None)
    with serve(create_app(engine, opensearch_url)) as up, serve(create_app(empty, [dead_url()])) as down:
        health = httpx.get(f"{up.url}/_qrw/health").json()
        assert health["status"] == "green" and health["model"]["loaded"] and health["upstream"] == {
            "reachable": 1, "nodes": 1, "details": health["upstream"]["details"]}
        assert health["upstream"]["details"][0]["url"] == opensearch_url and health["last_error"] is None
        response = httpx.get(f"{down.url}/_qrw/health")
        assert response.status_code == 503 and response.json()["status"] == "red" and not response.json()["model"]["loaded"]
        assert httpx.post(f"{down.url}/products/_search", json=SEARCH).status_code == 502
        last = httpx.get(f"{down.url}/_qrw/health").json()["last_error"]
        assert last["where"] == "upstream" and last["status"] == 502 and "cannot" in last["message"]
    engine.close()
    empty.close()


def test_metrics_count_requests_rewrites_fallbacks_latency_and_cache(opensearch_url, indexed_catalog, serve, faulty_model_cls):
    engine = RewriteEngine(load_config(None, chain={"deadline_ms": 2000}, proxy=LOOPBACK), TableRewriteModel(TABLE))
    broken = RewriteEngine(load_config(None, chain={"deadline_ms": 50}, proxy=LOOPBACK), faulty_model_cls(fail=True))
    slow = RewriteEngine(load_config(None, chain={"deadline_ms": 50}, proxy=LOOPBACK), faulty_model_cls(delay_s=0.3))
    with serve(create_app(engine, opensearch_url)) as good, serve(create_app(broken, opensearch_url)) as bad, \
            serve(create_app(slow, opensearch_url)) as late:
        for _ in range(3):
            assert httpx.post(f"{good.url}/products/_search", json=SEARCH).status_code == 200
        assert httpx.post(f"{good.url}/products/_search", json={"query": {"match": {"title": "toaster"}}}).status_code == 200
        assert httpx.get(f"{good.url}/products/_count").status_code == 200
        assert httpx.get(f"{good.url}/no-such-index/_count").status_code == 404
        text = httpx.get(f"{good.url}/_qrw/metrics").text
        assert metric(text, "qrw_proxy_requests_total", route="search", status="200") == 4
        assert metric(text, "qrw_proxy_requests_total", route="passthrough", status="404") == 1
        assert metric(text, "qrw_search_bodies_total", result="rewritten") == 3
        assert metric(text, "qrw_search_bodies_total", result="unchanged") == 1
        assert metric(text, "qrw_model_outputs_total", origin="model") == 2  # chromebook once, toaster once
        assert metric(text, "qrw_model_outputs_total", origin="cache") == 2  # chromebook twice more
        # 4 searches, 2 counts, and one suggest request (index respelling) per new query text: chromebook, toaster
        assert metric(text, "qrw_model_seconds_count") == 2 and metric(text, "qrw_upstream_seconds_count") == 8
        assert metric(text, "qrw_index_respellings_total", outcome="unchanged") == 2
        httpx.post(f"{bad.url}/products/_search", json=SEARCH)
        assert metric(httpx.get(f"{bad.url}/_qrw/metrics").text, "qrw_fallbacks_total", reason="error") == 1
        httpx.post(f"{late.url}/products/_search", json=SEARCH)
        assert metric(httpx.get(f"{late.url}/_qrw/metrics").text, "qrw_fallbacks_total", reason="timeout") == 1
    for e in (engine, broken, slow):
        e.close()


def test_reads_fail_over_to_the_next_node(opensearch_url, indexed_catalog, serve, raw_upstream):
    engine = RewriteEngine(load_config(None, proxy={**LOOPBACK, "health_interval_s": 0.2}), TableRewriteModel(TABLE))
    with serve(create_app(engine, [dead_url(), opensearch_url])) as server, httpx.Client(base_url=server.url, timeout=30) as proxy:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: proxy.post("/products/_search", json=SEARCH).status_code, range(60)))
        assert codes == [200] * 60
        nodes = proxy.get("/_qrw/health").json()["upstream"]["details"]
        assert [n["healthy"] for n in nodes] == [False, True] and "cannot connect" in nodes[0]["last_error"]
    # a node that takes the request and dies before answering: reads go to the next node, writes do not
    raw_upstream.drop_when = lambda request: b"_search" in request["url"] or request["method"] == "PUT"
    with serve(create_app(engine, [raw_upstream.url, opensearch_url])) as server, httpx.Client(base_url=server.url, timeout=30) as proxy:
        codes = [proxy.post("/products/_search", json=SEARCH).status_code for _ in range(20)]
        assert codes == [200] * 20 and any(b"_search" in r["url"] for r in raw_upstream.requests)
        raw_upstream.requests.clear()
        for _ in range(40):  # round-robin (once its health check passes again): a write lands on the dying node
            response = proxy.put("/qrw-failover-write/_doc/1", json={"title": "x"})
            if any(r["method"] == "PUT" for r in raw_upstream.requests):
                break
            time.sleep(0.1)
        assert response.status_code == 502 and response.json()["error"]["type"] == "upstream_unavailable_exception"
    httpx.delete(f"{opensearch_url}/qrw-failover-write")
    engine.close()


def test_which_requests_are_replayed():
    assert is_idempotent_read("GET", "/products/_doc/1") and is_idempotent_read("POST", "/products/_search")
    assert is_idempotent_read("POST", "/_msearch") and is_idempotent_read("POST", "/p/_count")
    for method, path in (("POST", "/_search/scroll"), ("POST", "/p/_doc"), ("PUT", "/p/_doc/1"), ("DELETE", "/p"),
                         ("POST", "/p/_search/point_in_time"), ("POST", "/p/_update_by_query")):
        assert not is_idempotent_read(method, path), (method, path)


def test_several_worker_processes_serve_and_add_up_their_metrics(opensearch_url, indexed_catalog, tmp_path):
    table = tmp_path / "rewrites.jsonl"
    table.write_text('{"query": "chromebook", "rewrites": [{"text": "notebook", "tag": "exact"}]}\n')
    config = tmp_path / "plugin.yaml"
    config.write_text(f"proxy:\n  debug_networks: [127.0.0.1/32]\n  workers: 2\ncache:\n  precompute_file: {tmp_path / 'q.txt'}\n")
    (tmp_path / "q.txt").write_text("chromebook\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "qrw.cli", "proxy", "--upstream", opensearch_url, "--model", str(table),
                                "--port", str(port), "--config", str(config)], start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/_qrw/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(lambda _: httpx.post(f"{url}/products/_search", json=SEARCH, headers={"X-QRW-Explain": "1"},
                                                           timeout=30), range(40)))
        assert all(r.status_code == 200 and r.json()["qrw"]["rewritten"] for r in responses)
        assert all(r.json()["qrw"]["model"]["origin"] == "cache" for r in responses)  # every worker precomputed it
        text = httpx.get(f"{url}/_qrw/metrics").text
        assert metric(text, "qrw_proxy_requests_total", route="search", status="200") == 40
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
    assert process.returncode == 0 or process.returncode == -15
