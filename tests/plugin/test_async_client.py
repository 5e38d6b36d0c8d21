"""The asyncio twin of the opensearch-py drop-in, against the real node: the same surface and results."""

import asyncio
import json

import pytest
from opensearchpy import AsyncOpenSearch, OpenSearch

from qrw.plugin import AsyncRewritingOpenSearch, RewritingOpenSearch
from qrw.plugin.config import load_config
from qrw.plugin.table import TableRewriteModel

pytestmark = pytest.mark.opensearch

FIELDS = ["title^3", "name^2", "supplier^2", "short_description", "attributes"]
ZERO = {"exact": 0.0, "substitute": 0.0, "weak": 0.0, "irrelevant": 0.0}
TABLE = {
    "chromebook": [("notebook", {**ZERO, "exact": 1.0}), ("laptop", {**ZERO, "substitute": 1.0}), ("toaster", {**ZERO, "irrelevant": 1.0})],
    "usb stick": [("usb flash drive", {**ZERO, "exact": 1.0})],
}


def body_for(text, **extra):
    return {"query": {"multi_match": {"query": text, "fields": FIELDS}}, "size": 10000, "_source": False, **extra}


def ids(response):
    return [hit["_id"] for hit in response["hits"]["hits"]]


def run(coroutine):
    return asyncio.run(coroutine)


def test_same_surface_as_the_sync_client():
    for name in ("search", "msearch", "close"):
        assert asyncio.iscoroutinefunction(getattr(AsyncRewritingOpenSearch, name))
    assert issubclass(AsyncRewritingOpenSearch, AsyncOpenSearch) and issubclass(RewritingOpenSearch, OpenSearch)
    sync_api = {n for n in dir(RewritingOpenSearch) if not n.startswith("_")} - {n for n in dir(OpenSearch) if not n.startswith("_")}
    async_api = {n for n in dir(AsyncRewritingOpenSearch) if not n.startswith("_")} - {n for n in dir(AsyncOpenSearch) if not n.startswith("_")}
    assert sync_api == async_api  # nothing added on one side only


def test_async_results_equal_the_sync_clients(opensearch_url, indexed_catalog):
    config = load_config(None, chain={"deadline_ms": 2000})
    sync = RewritingOpenSearch(hosts=[opensearch_url], model=TableRewriteModel(TABLE), config=config)

    async def scenario():
        client = AsyncRewritingOpenSearch(hosts=[opensearch_url], model=TableRewriteModel(TABLE), config=config)
        try:
            plain = AsyncOpenSearch(hosts=[opensearch_url])
            original = await plain.search(index=indexed_catalog, body=body_for("chromebook"))
            await plain.close()
            merged = await client.search(index=indexed_catalog, body=body_for("chromebook"), headers={"X-QRW-Explain": "true"})
            other = await client.count(index=indexed_catalog)
            lines = [{"index": indexed_catalog}, body_for("usb stick", size=5), {}, {"query": {"match_all": {}}, "size": 1}]
            generated = await client.msearch(body=(line for line in lines), index=indexed_catalog, headers={"X-QRW-Explain": "1"})
            ndjson = await client.msearch(body="".join(json.dumps(x) + "\n" for x in lines), index=indexed_catalog)
            text = await client.search(index=indexed_catalog, body=json.dumps(body_for("usb stick", size=3)))
            return original, merged, other, generated, ndjson, text
        finally:
            await client.close()

    original, merged, other, generated, ndjson, text = run(scenario())
    try:
        assert set(ids(original)) < set(ids(merged))
        assert [r["text"] for r in merged["qrw"]["rewrites"]][:2] == ["notebook", "laptop"]
        assert ids(merged) == ids(sync.search(index=indexed_catalog, body=body_for("chromebook")))
        assert other["count"] == sync.count(index=indexed_catalog)["count"]
        first, second = generated["responses"]
        assert first["qrw"]["rewritten"] and not second["qrw"]["rewritten"]
        assert any("qrw:rewrite:0" in h.get("matched_queries", []) for h in first["hits"]["hits"])
        assert len(ndjson["responses"]) == 2 and "qrw" not in ndjson["responses"][0]
        assert any("qrw:rewrite:0" in h.get("matched_queries", []) for h in text["hits"]["hits"])
    finally:
        sync.close()


def test_async_client_never_blocks_the_loop_on_a_slow_model(opensearch_url, indexed_catalog, faulty_model_cls):
    """While a slow model call runs in a thread, other coroutines on the loop keep running."""
    model = faulty_model_cls(delay_s=0.5, rewrites={"chromebook": ["notebook"]})

    async def scenario():
        client = AsyncRewritingOpenSearch(hosts=[opensearch_url], model=model, config=load_config(None, chain={"deadline_ms": 2000}))
        ticks = 0

        async def ticker():
            nonlocal ticks
            for _ in range(20):
                await asyncio.sleep(0.02)
                ticks += 1

        try:
            response, _ = await asyncio.gather(client.search(index=indexed_catalog, body=body_for("chromebook", size=1),
                                                             headers={"X-QRW-Explain": "1"}), ticker())
        finally:
            await client.close()
        return response, ticks

    response, ticks = run(scenario())
    assert response["qrw"]["rewritten"] and ticks == 20


def test_async_brand_guard_reads_its_brands_from_the_index(opensearch_url, indexed_catalog):
    config = load_config(None, chain={"deadline_ms": 2000}, guards={"brands_field": "supplier.raw"})
    table = {"toner": [("hp toner", {**ZERO, "exact": 1.0})]}

    async def scenario():
        client = AsyncRewritingOpenSearch(hosts=[opensearch_url], model=TableRewriteModel(table), config=config)
        try:
            return await client.search(index=indexed_catalog, body=body_for("toner", size=1), headers={"X-QRW-Explain": "1"})
        finally:
            await client.close()

    answer = run(scenario())
    assert [(r["text"], r.get("dropped_by")) for r in answer["qrw"]["rewrites"]] == [("hp toner", "guards: adds brand 'hp'")]
