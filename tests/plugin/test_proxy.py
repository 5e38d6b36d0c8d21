"""The REST proxy, served by uvicorn on loopback, in front of the real OpenSearch node (and, where a
test must see or break the upstream itself, in front of a small real HTTP server of ours)."""

import concurrent.futures
import json
import logging
import subprocess
import sys

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from qrw.plugin.config import load_config
from qrw.plugin.engine import RewriteEngine, load_model
from qrw.plugin.proxy import create_app
from qrw.plugin.rules import parse_rules
from qrw.plugin.table import TableRewriteModel

FIELDS = ["title^3", "name^2", "supplier^2", "short_description", "attributes"]
ALL_TAGS = {"exact": 0.0, "substitute": 0.0, "weak": 0.0, "irrelevant": 0.0}
TABLE = {
    "chromebook": [("notebook", {**ALL_TAGS, "exact": 1.0}), ("laptop", {**ALL_TAGS, "substitute": 1.0})],
    "hp": [("title:hp OR *:*", {**ALL_TAGS, "exact": 1.0})],
    "écouteurs sans fil": [("wireless earbuds", {**ALL_TAGS, "exact": 1.0})],
}


DEBUG_FROM_LOOPBACK = {"debug_networks": ["127.0.0.1/32"]}


def make_engine(**sections):
    sections["proxy"] = {**DEBUG_FROM_LOOPBACK, **sections.get("proxy", {})}
    return RewriteEngine(load_config(None, chain={"deadline_ms": 2000}, **sections), TableRewriteModel(TABLE),
                         parse_rules(["usb stick =>", "    PIN: usb flash drive"], "rules"))


@pytest.fixture(scope="module")
def proxied(opensearch_url, indexed_catalog, serve):
    engine = make_engine(proxy={"rewrite_indices": ["products*", "_all"], "max_body_bytes": 2_000_000})
    with serve(create_app(engine, opensearch_url)) as server:
        with httpx.Client(base_url=server.url, timeout=30) as proxy, httpx.Client(base_url=opensearch_url, timeout=30) as direct:
            yield proxy, direct
    engine.close()


def search_body(text, **extra):
    return {"query": {"multi_match": {"query": text, "fields": FIELDS}}, "size": 10000, "_source": False, **extra}


def ids(response):
    return {hit["_id"] for hit in response.json()["hits"]["hits"]}


pytestmark = pytest.mark.opensearch


# -- search is rewritten -------------------------------------------------------------------------


def test_search_superset_provenance_and_explain(proxied, indexed_catalog):
    proxy, direct = proxied
    original = direct.post(f"/{indexed_catalog}/_search", json=search_body("chromebook"))
    merged = proxy.post(f"/{indexed_catalog}/_search", json=search_body("chromebook"), headers={"X-QRW-Explain": "true"})
    assert merged.status_code == 200 and ids(original) < ids(merged)
    names = {n for hit in merged.json()["hits"]["hits"] for n in hit.get("matched_queries", [])}
    assert names == {"qrw:original", "qrw:rewrite:0", "qrw:rewrite:1"}
    report = merged.json()["qrw"]
    assert [(r["text"], r["action"], r["weight"]) for r in report["rewrites"]] == [("notebook", "full", 1.0), ("laptop", "down", 0.3)]
    assert report["rewrites"][0]["probabilities"]["exact"] == 1.0 and "total" in report["timings_ms"]
    assert merged.headers["x-qrw-explain"].startswith("rewritten=1/1; kept=2") and "x-qrw-took-ms" in merged.headers
    quiet = proxy.post(f"/{indexed_catalog}/_search", json=search_body("chromebook", size=3))
    assert "qrw" not in quiet.json() and "x-qrw-explain" not in quiet.headers


def test_get_search_without_index_and_ext_explain(proxied):
    proxy, _ = proxied
    body = {"query": {"match": {"title": "usb stick"}}, "size": 3, "ext": {"qrw": {"explain": True}}}
    response = proxy.request("GET", "/_search", content=json.dumps(body), headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["qrw"]["rewrites"][0]["text"] == "usb flash drive"  # pinned by rule
    assert response.json()["qrw"]["rewrites"][0]["rule"] == "rules:2"


def test_filters_aggs_sort_paging_highlight_preserved(proxied, indexed_catalog):
    proxy, direct = proxied
    body = {"query": {"bool": {"must": [{"match": {"title": "chromebook"}}], "filter": [{"range": {"price": {"lte": 400}}}]}},
            "size": 4, "from": 1, "sort": [{"price": "asc"}, {"id": "asc"}], "_source": ["price"],
            "aggs": {"max_price": {"max": {"field": "price"}}}, "highlight": {"fields": {"title": {}}}}
    response = proxy.post(f"/{indexed_catalog}/_search", json=body).json()
    hits = response["hits"]["hits"]
    assert len(hits) == 4 and all(h["_source"]["price"] <= 400 for h in hits)
    assert [h["sort"][0] for h in hits] == sorted(h["sort"][0] for h in hits)
    assert response["aggregations"]["max_price"]["value"] <= 400
    assert any("highlight" in h for h in hits)


def test_msearch_ndjson(proxied, indexed_catalog):
    proxy, direct = proxied
    lines = [{"index": indexed_catalog}, search_body("chromebook", size=5), {}, {"query": {"match_all": {}}, "size": 1}]
    ndjson = "".join(json.dumps(line) + "\n" for line in lines)
    response = proxy.post("/_msearch", content=ndjson, headers={"content-type": "application/x-ndjson", "X-QRW-Explain": "on"})
    assert response.status_code == 200, response.text
    first, second = response.json()["responses"]
    assert first["qrw"]["rewritten"] and not second["qrw"]["rewritten"]
    assert any("qrw:rewrite:0" in h.get("matched_queries", []) for h in first["hits"]["hits"])
    plain = proxy.post(f"/{indexed_catalog}/_msearch", content=ndjson, headers={"content-type": "application/x-ndjson"})
    assert plain.status_code == 200 and "qrw" not in plain.json()["responses"][0]


# -- everything else passes through unchanged ----------------------------------------------------


def _strip(payload):
    return {k: v for k, v in payload.items() if k not in ("took", "_id", "_seq_no", "_primary_term", "_version")}


def test_non_search_apis_answer_as_opensearch_does(proxied):
    proxy, direct = proxied
    for client in (proxy, direct):
        client.delete("/qrw-passthrough-a")
    created = proxy.put("/qrw-passthrough-a", json={"settings": {"number_of_replicas": 0}})
    assert created.status_code == 200 and created.json()["index"] == "qrw-passthrough-a"
    indexed = proxy.put("/qrw-passthrough-a/_doc/1?refresh=true", json={"title": "üñí 日本 doc"})
    assert indexed.status_code == 201
    bulk = "".join(json.dumps(x) + "\n" for x in [{"index": {"_id": "2"}}, {"title": "two"}, {"delete": {"_id": "9"}}])
    via_proxy = proxy.post("/qrw-passthrough-a/_bulk?refresh=true", content=bulk, headers={"content-type": "application/x-ndjson"})
    assert via_proxy.status_code == 200 and len(via_proxy.json()["items"]) == 2
    for path in ("/qrw-passthrough-a/_doc/1", "/qrw-passthrough-a/_doc/404", "/qrw-passthrough-a/_count",
                 "/_cat/indices/qrw-passthrough-a?h=index,docs.count", "/qrw-passthrough-a/_mapping", "/no-such-index/_doc/1",
                 "/_cat/health?h=status"):
        a, b = proxy.get(path), direct.get(path)
        assert (a.status_code, a.content) == (b.status_code, b.content), path
        assert a.headers.get("content-type") == b.headers.get("content-type")
    head_proxy, head_direct = proxy.head("/qrw-passthrough-a"), direct.head("/qrw-passthrough-a")
    assert head_proxy.status_code == head_direct.status_code == 200
    assert proxy.head("/qrw-missing").status_code == 404
    deleted = proxy.delete("/qrw-passthrough-a")
    assert deleted.status_code == 200 and direct.head("/qrw-passthrough-a").status_code == 404


def test_search_errors_pass_through(proxied):
    proxy, direct = proxied
    for path, body in (("/no-such-index/_search", {"query": {"match": {"title": "x"}}}),
                       ("/products/_search", {"query": {"no_such_query": {}}})):
        a, b = proxy.post(path, json=body), direct.post(path, json=body)
        assert a.status_code == b.status_code >= 400 and a.json()["error"]["type"] == b.json()["error"]["type"]


# -- bad input -----------------------------------------------------------------------------------


def test_malformed_json_is_a_400_in_opensearch_style(proxied):
    proxy, direct = proxied
    for path in ("/products/_search", "/_msearch"):
        a = proxy.post(path, content=b'{"query": {"match": ', headers={"content-type": "application/json"})
        b = direct.post(path, content=b'{"query": {"match": ', headers={"content-type": "application/json"})
        assert a.status_code == b.status_code == 400
        assert a.json()["status"] == 400 and a.json()["error"]["type"] == b.json()["error"]["type"]


def test_empty_unicode_and_syntax_queries_match_as_text(proxied, indexed_catalog):
    proxy, direct = proxied
    for text in ("", "   ", "écouteurs sans fil", "日本語 💥 \u0000 \\ \" '", '{"match_all": {}}', "title:hp OR *:*", "hp"):
        body = search_body(text, size=0, track_total_hits=True)
        a = proxy.post(f"/{indexed_catalog}/_search", json=body, headers={"X-QRW-Explain": "1"})
        assert a.status_code == 200, (text, a.text)
        if text == "hp":  # its rewrite is query-string syntax: matched as words, never as *:* (all 19,406)
            assert a.json()["qrw"]["rewritten"]
            assert a.json()["hits"]["total"]["value"] < 19406
    qs = {"query": {"query_string": {"query": "hp", "fields": ["title"]}}, "size": 0, "track_total_hits": True}
    rewritten = proxy.post(f"/{indexed_catalog}/_search", json=qs, headers={"X-QRW-Explain": "1"}).json()
    assert rewritten["qrw"]["rewritten"] and rewritten["hits"]["total"]["value"] < 19406
    assert not proxy.post(f"/{indexed_catalog}/_search", json=search_body("", size=0), headers={"X-QRW-Explain": "1"}).json()["qrw"]["rewritten"]


def test_one_megabyte_query_and_body_limit(proxied, indexed_catalog):
    proxy, direct = proxied
    huge = search_body(("laptop " * 150_000)[:1_000_000], size=1)
    a, b = proxy.post(f"/{indexed_catalog}/_search", json=huge), direct.post(f"/{indexed_catalog}/_search", json=huge)
    assert a.status_code == b.status_code  # not rewritten (too long): OpenSearch decides, as without the proxy
    too_big = proxy.post(f"/{indexed_catalog}/_search", json=search_body("x" * 2_100_000))
    assert too_big.status_code == 413
    assert too_big.json()["error"]["type"] == "content_too_long_exception" and too_big.json()["status"] == 413


# -- faults and headers (a real upstream of ours that we can inspect, stop and start) ---------


async def _echo(request: Request):
    body = await request.body()
    if request.url.path == "/stream":
        async def chunks():
            for i in range(64):
                yield bytes([65 + i % 26]) * 65536
        return StreamingResponse(chunks(), headers={"x-upstream": "yes"}, media_type="application/octet-stream")
    return JSONResponse({"method": request.method, "path": request.url.path, "query": request.url.query,
                         "headers": dict(request.headers), "body": body.decode("utf-8", "replace")},
                        status_code=int(request.query_params.get("status", 200)), headers={"x-upstream": "yes"})


ECHO = Starlette(routes=[Route("/{path:path}", _echo, methods=["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"])])


def test_headers_auth_and_streaming_are_forwarded(serve):
    engine = make_engine()
    with serve(ECHO) as upstream, serve(create_app(engine, upstream.url)) as server:
        with httpx.Client(base_url=server.url) as proxy:
            echo = proxy.put("/idx/_doc/1?refresh=true&x=%2F", content=b"raw", headers={
                "Authorization": "Basic dXNlcjpwYXNz", "X-Opaque-Id": "abc", "Content-Type": "text/plain"}).json()
            assert echo["headers"]["authorization"] == "Basic dXNlcjpwYXNz" and echo["headers"]["x-opaque-id"] == "abc"
            assert echo["body"] == "raw" and echo["query"] == "refresh=true&x=%2F" and echo["method"] == "PUT"
            status = proxy.get("/x?status=418")
            assert status.status_code == 418 and status.headers["x-upstream"] == "yes"
            streamed = proxy.get("/stream")
            assert len(streamed.content) == 64 * 65536 and streamed.content[:1] == b"A"
            searched = proxy.post("/idx/_search", json={"query": {"match": {"title": "chromebook"}}, "ext": {"qrw": {"explain": 1}}},
                                  headers={"Authorization": "Bearer t"}).json()
            sent = json.loads(searched["body"])
            assert "ext" not in sent and searched["headers"]["authorization"] == "Bearer t"
            assert sent["query"]["bool"]["should"][1]["match"]["title"]["_name"] == "qrw:rewrite:0"
    engine.close()


def test_upstream_down_is_a_502_and_the_proxy_recovers(serve):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = make_engine()
    with serve(create_app(engine, f"http://127.0.0.1:{port}")) as server:
        with httpx.Client(base_url=server.url, timeout=10) as proxy:
            for method, path in (("POST", "/products/_search"), ("GET", "/_cat/indices"), ("POST", "/_msearch")):
                down = proxy.request(method, path, json={"query": {"match": {"title": "chromebook"}}})
                assert down.status_code == 502
                error = down.json()
                assert error["status"] == 502 and error["error"]["type"] == "upstream_unavailable_exception" and error["error"]["reason"]
            with serve(ECHO, port=port):  # the upstream comes back on the same port: no proxy restart needed
                assert proxy.get("/_cat/indices").status_code == 200
                with concurrent.futures.ThreadPoolExecutor(8) as pool:
                    codes = list(pool.map(lambda i: proxy.post("/p/_search", json={"query": {"match": {"t": f"q{i % 5}"}}}).status_code, range(80)))
                assert codes == [200] * 80
            assert proxy.get("/_cat/indices").status_code == 502
    engine.close()


def test_missing_model_serves_the_original_with_a_warning(opensearch_url, indexed_catalog, tmp_path, caplog, serve):
    with caplog.at_level(logging.WARNING, logger="qrw.plugin"):
        model = load_model(tmp_path / "no-model-here")
    assert model is None and "serving original queries" in caplog.text
    engine = RewriteEngine(load_config(None, proxy=DEBUG_FROM_LOOPBACK), model)
    body = search_body("chromebook", size=20)
    with serve(create_app(engine, opensearch_url)) as server:
        a = httpx.post(f"{server.url}/{indexed_catalog}/_search", json=body, headers={"X-QRW-Explain": "1"}).json()
        b = httpx.post(f"{opensearch_url}/{indexed_catalog}/_search", json=body).json()
    assert [h["_id"] for h in a["hits"]["hits"]] == [h["_id"] for h in b["hits"]["hits"]]
    assert not a["qrw"]["rewritten"] and a["qrw"]["model"]["error"] == "no model loaded"
    engine.close()


def test_concurrent_clients_lose_nothing(proxied, indexed_catalog):
    proxy, _ = proxied
    queries = ["chromebook", "usb stick", "hp", "tablet", "écouteurs sans fil"]

    def one(i):
        text = queries[i % len(queries)]
        response = proxy.post(f"/{indexed_catalog}/_search", json=search_body(text, size=3))
        return response.status_code, i, response.json()["hits"]["total"]["value"] >= 0

    with concurrent.futures.ThreadPoolExecutor(10) as pool:
        results = list(pool.map(one, range(300)))
    assert [code for code, _, _ in results] == [200] * 300 and sorted(i for _, i, _ in results) == list(range(300))


# -- import hygiene and the CLI ------------------------------------------------------------------


def test_proxy_import_does_not_load_torch():
    code = ("import sys, qrw.plugin.proxy, qrw.plugin.proxy_cli, qrw.plugin.client, qrw.plugin.model_store, qrw.eval.calibrate_cli;"
            "bad = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("command", ["proxy", "calibrate"])
def test_cli_help(command):
    result = subprocess.run([sys.executable, "-m", "qrw.cli", command, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--model" in result.stdout


def test_cli_rejects_bad_rules_with_line(tmp_path):
    rules = tmp_path / "rules.txt"
    rules.write_text("laptop =>\n    SHOUT: x\n")
    result = subprocess.run([sys.executable, "-m", "qrw.cli", "proxy", "--upstream", "http://127.0.0.1:1", "--rules", str(rules)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and f"{rules}:2:" in result.stderr


def test_scaled_down_load_test(opensearch_url, indexed_catalog, serve, tmp_path):
    """The repo's load test (benchmarks/loadtest_proxy.py) at 10 clients x 30 requests: 0 errors, 0 lost."""
    import asyncio
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "loadtest_proxy.py"
    spec = importlib.util.spec_from_file_location("loadtest_proxy", script)
    loadtest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loadtest)
    queries = loadtest.judged_queries()
    engine = RewriteEngine(load_config(None), TableRewriteModel.from_file(loadtest.write_table(queries, tmp_path / "t.jsonl")))
    with serve(create_app(engine, opensearch_url)) as server:
        result = asyncio.run(loadtest.run_phase(server.url, queries, 10, 30, 0, None))
    engine.close()
    assert result["sent"] == 300 and result["classes"] == {"correct": 300}, result


def test_a_proxy_that_could_not_read_its_brands_at_start_reads_them_before_a_search(opensearch_url, indexed_catalog, serve):
    """Started before OpenSearch (its brand read at start failed), the proxy reads ``guards.brands_field`` before
    the next search that needs the model, so the brand guard drops ``toner`` -> ``hp toner``."""
    table = {"toner": [("hp toner", {**ALL_TAGS, "exact": 1.0})]}
    engine = RewriteEngine(load_config(None, chain={"deadline_ms": 2000}, guards={"brands_field": "supplier.raw"},
                                       proxy={**DEBUG_FROM_LOOPBACK, "rewrite_indices": ["products*"]}),
                           TableRewriteModel(table))
    assert not engine.brands_read
    with serve(create_app(engine, opensearch_url)) as server, httpx.Client(base_url=server.url, timeout=30) as proxy:
        answer = proxy.post(f"/{indexed_catalog}/_search", json=search_body("toner", size=1),
                            headers={"X-QRW-Explain": "true"}).json()
    engine.close()
    assert engine.brands_read
    assert [(r["text"], r.get("dropped_by")) for r in answer["qrw"]["rewrites"]] == [("hp toner", "guards: adds brand 'hp'")]


def test_the_proxy_tells_the_client_what_it_changed(opensearch_url, indexed_catalog, serve):
    """Without debug access a client still learns, from headers, that its results include an index respelling
    (X-QRW-Respelling) or come from the fuzzy retry of an empty search (X-QRW-Zero-Hit-Retry); an unchanged
    search carries neither, and ``proxy.announce_changes: false`` turns both off."""
    from urllib.parse import unquote

    def answers(announce):
        engine = RewriteEngine(load_config(None, chain={"deadline_ms": 2000}, respell={"timeout_ms": 10_000},
                                           proxy={"rewrite_indices": ["products*"], "announce_changes": announce}),
                               TableRewriteModel({}))
        out = {}
        with serve(create_app(engine, opensearch_url)) as server, httpx.Client(base_url=server.url, timeout=30) as proxy:
            for text in ("head set", "head set", "keyboaard xqzv", "usb cable"):  # the second head set: the memo path
                response = proxy.post(f"/{indexed_catalog}/_search", json={"query": {"match": {"all_text": text}}, "size": 3})
                assert response.status_code == 200
                out.setdefault(text, []).append({k: unquote(v) for k, v in response.headers.items() if k.startswith("x-qrw")})
            lines = "".join(f'{{"index": "{indexed_catalog}"}}\n{{"query": {{"match": {{"all_text": "{text}"}}}}}}\n'
                            for text in ("head set", "usb cable", "keyboaard xqzv"))
            response = proxy.post("/_msearch", content=lines, headers={"content-type": "application/x-ndjson"})
            assert response.status_code == 200 and len(response.json()["responses"]) == 3
            out["msearch"] = [{k: v for k, v in response.headers.items() if k.startswith("x-qrw")}]
        engine.close()
        return out

    on = answers(True)
    assert on["head set"] == [{"x-qrw-respelling": "headset"}] * 2  # fresh and remembered alike
    assert on["keyboaard xqzv"] == [{"x-qrw-respelling": "keyboard xqzv", "x-qrw-zero-hit-retry": "fuzzy"}]
    assert on["usb cable"] == [{}]
    # an _msearch says it by item position, values percent-encoded
    assert on["msearch"] == [{"x-qrw-respelling": "0=headset,2=keyboard%20xqzv", "x-qrw-zero-hit-retry": "2=fuzzy"}]
    assert all(headers == {} for rows in answers(False).values() for headers in rows)



def test_x_qrw_rewrite_off_sends_the_search_as_written(opensearch_url, indexed_catalog, serve):
    """``X-QRW-Rewrite: off`` ("search instead for ..."): no respelling, no rewrite, no zero-hit retry; the
    answer is OpenSearch's own for the body as sent, and the header is not forwarded."""
    engine = RewriteEngine(load_config(None, chain={"deadline_ms": 2000}, respell={"timeout_ms": 10_000},
                                       proxy={"rewrite_indices": ["products*"]}), TableRewriteModel(TABLE))
    body = lambda text: {"query": {"match": {"all_text": text}}, "size": 20, "_source": False}  # noqa: E731
    with serve(create_app(engine, opensearch_url)) as server, httpx.Client(base_url=server.url, timeout=30) as proxy, \
            httpx.Client(base_url=opensearch_url, timeout=30) as direct:
        for text in ("head set", "keyboaard xqzv", "chromebook"):
            off = proxy.post(f"/{indexed_catalog}/_search", json=body(text), headers={"X-QRW-Rewrite": "off"})
            own = direct.post(f"/{indexed_catalog}/_search", json=body(text))
            assert off.status_code == 200 and [h["_id"] for h in off.json()["hits"]["hits"]] == [h["_id"] for h in own.json()["hits"]["hits"]]
            assert not [k for k in off.headers if k.startswith("x-qrw")]
            on = proxy.post(f"/{indexed_catalog}/_search", json=body(text))
            assert on.json()["hits"]["total"]["value"] > own.json()["hits"]["total"]["value"] or "x-qrw-respelling" in on.headers
        lines = f'{{"index": "{indexed_catalog}"}}\n{{"query": {{"match": {{"all_text": "keyboaard xqzv"}}}}}}\n'
        off = proxy.post("/_msearch", content=lines, headers={"X-QRW-Rewrite": "off", "content-type": "application/x-ndjson"})
        assert off.json()["responses"][0]["hits"]["total"]["value"] == 0  # no respelling, no retry
    engine.close()
