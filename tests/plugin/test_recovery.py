"""Zero-hit recovery: the retry body (pure), and the proxy, both clients and `qrw eval` against the real node."""

import gzip
import json

import httpx
import pytest
from opensearchpy import OpenSearch

from qrw.errors import ConfigError
from qrw.plugin import RewritingOpenSearch
from qrw.plugin.config import RecoveryConfig, load_config
from qrw.plugin.engine import RewriteEngine
from qrw.plugin.proxy import create_app
from qrw.plugin.recovery import asks_for_first_page, found_nothing, fuzzy_body, retry_body
from qrw.plugin.table import TableRewriteModel

ON = RecoveryConfig()
EMPTY = {"took": 1, "hits": {"total": {"value": 0, "relation": "eq"}, "max_score": None, "hits": []}}
TYPO = "keyboaard"  # one doubled letter: the catalog's keyboards match nothing exact
DEBUG = {"debug_networks": ["127.0.0.1/32"]}


# -- the retry body ---------------------------------------------------------------------------------


def test_match_and_multi_match_become_fuzzy_and_nothing_else_changes():
    body = {"query": {"bool": {
        "should": [{"match": {"title": "keyboaard"}},
                   {"match": {"name": {"query": "keyboaard", "operator": "and", "_name": "qrw:rewrite:0"}}},
                   {"multi_match": {"query": "keyboaard", "fields": ["all_text", "supplier.stem^1", "all_text.join^1"],
                                    "type": "most_fields"}}],
        "filter": [{"term": {"supplier.raw": "Cherry"}}, {"range": {"price": {"lte": 100}}}]}},
        "aggs": {"brands": {"filter": {"match": {"title": "keyboaard"}}}}, "size": 10}
    retry = fuzzy_body(body, ON)
    should = retry["query"]["bool"]["should"]
    assert should[0] == {"match": {"title": {"query": "keyboaard", "fuzziness": "AUTO", "prefix_length": 1}}}
    assert should[1]["match"]["name"] == {"query": "keyboaard", "operator": "and", "_name": "qrw:rewrite:0", "fuzziness": "AUTO",
                                          "prefix_length": 1}
    assert should[2]["multi_match"]["fields"] == ["all_text", "supplier.stem^1"]  # the joined pairs stay exact
    assert should[2]["multi_match"]["fuzziness"] == "AUTO" and should[2]["multi_match"]["type"] == "most_fields"
    assert should[2]["multi_match"]["prefix_length"] == 1
    assert retry["query"]["bool"]["filter"] == body["query"]["bool"]["filter"]
    assert retry["aggs"] == body["aggs"] and retry["size"] == 10  # only the query changes
    assert body["query"]["bool"]["should"][0] == {"match": {"title": "keyboaard"}}  # the caller's body is not mutated


@pytest.mark.parametrize("query", [
    {"match": {"title": {"query": "x", "fuzziness": 1}}},
    {"multi_match": {"query": "x", "fields": ["title", "name"], "type": "cross_fields"}},
    {"multi_match": {"query": "x", "fields": ["title"], "type": "phrase"}},
    {"multi_match": {"query": "x", "fields": ["all_text.join"]}},
    {"match": {"all_text.join": "x"}},
    {"match_phrase": {"title": "x"}},
    {"term": {"supplier.raw": "x"}},
    {"match_all": {}},
])
def test_a_body_with_nothing_to_make_fuzzy_is_not_retried(query):
    assert fuzzy_body({"query": query}, ON) is None


def test_only_an_empty_first_page_is_retried():
    body = {"query": {"match": {"title": "x"}}}
    assert retry_body(body, EMPTY, ON) is not None
    assert retry_body({**body, "size": 0}, EMPTY, ON) is None  # a count: zero is the answer
    assert retry_body({**body, "from": 20}, EMPTY, ON) is None  # past the last page
    assert retry_body({**body, "search_after": [1]}, EMPTY, ON) is None
    assert retry_body(body, {"hits": {"total": {"value": 3}, "hits": [{"_id": "1"}]}}, ON) is None
    assert retry_body(body, {"error": {"type": "x"}, "status": 400}, ON) is None
    assert retry_body(body, EMPTY, RecoveryConfig(zero_hits=False)) is None
    assert found_nothing({"hits": {"hits": []}}) and not found_nothing({"hits": {"total": 5, "hits": []}})
    assert asks_for_first_page({"size": 5, "from": 0}) and not asks_for_first_page({"size": True})


def test_config_checks_fuzziness():
    assert RecoveryConfig(fuzziness="AUTO:4,8").fuzziness == "AUTO:4,8"
    with pytest.raises(ConfigError, match="fuzziness"):
        load_config(None, recovery={"fuzziness": "3"})


# -- against the real node --------------------------------------------------------------------------

def body(text, **extra):
    return {"query": {"multi_match": {"query": text, "fields": ["title^3", "name^2", "short_description"]}},
            "size": 10, "_source": ["title"], **extra}


def titles(response):
    return [hit["_source"]["title"] for hit in response["hits"]["hits"]]


def engine(proxy=None, **recovery):
    model = TableRewriteModel({"laptop": [("notebook", {"exact": 1.0, "substitute": 0, "weak": 0, "irrelevant": 0})]})
    return RewriteEngine(load_config(None, chain={"deadline_ms": 2000}, proxy={**DEBUG, **(proxy or {})},
                                     recovery=recovery, respell={"enabled": False}), model)  # recovery alone


@pytest.fixture(scope="module")
def proxy_url(opensearch_url, indexed_catalog, serve):
    rewriting = engine()
    with serve(create_app(rewriting, opensearch_url)) as server:
        yield server.url
    rewriting.close()


@pytest.mark.opensearch
def test_proxy_recovers_an_empty_search_and_says_so(proxy_url, opensearch_url, indexed_catalog):
    direct = OpenSearch(hosts=[opensearch_url]).search(index=indexed_catalog, body=body(TYPO))
    assert direct["hits"]["total"]["value"] == 0
    with httpx.Client(base_url=proxy_url, timeout=30) as proxy:
        answer = proxy.post(f"/{indexed_catalog}/_search", json=body(TYPO), headers={"X-QRW-Explain": "true"}).json()
        assert answer["hits"]["total"]["value"] > 0 and all("eyboard" in t.lower() for t in titles(answer)[:5])
        assert answer["qrw"]["recovery"] == {"reason": "no hits", "fuzziness": "AUTO", "hits": answer["hits"]["total"]["value"]}
        summary = proxy.post(f"/{indexed_catalog}/_search", json=body(TYPO), headers={"X-QRW-Explain": "true"}).headers
        assert "recovered=1;" in summary["x-qrw-explain"]
        # a query with results is answered as OpenSearch answers it, and counts stay counts
        plain = proxy.post(f"/{indexed_catalog}/_search", json=body("keyboard")).json()
        assert titles(plain) == titles(OpenSearch(hosts=[opensearch_url]).search(index=indexed_catalog, body=body("keyboard")))
        assert proxy.post(f"/{indexed_catalog}/_search", json=body(TYPO, size=0)).json()["hits"]["total"]["value"] == 0
        assert proxy.post(f"/{indexed_catalog}/_search", json=body(TYPO, **{"from": 10})).json()["hits"]["hits"] == []
        scrolled = proxy.post(f"/{indexed_catalog}/_search?scroll=1m", json=body(TYPO)).json()
        assert scrolled["hits"]["hits"] == []
        # a gzip request body: the retry is sent encoded the same way
        zipped = proxy.post(f"/{indexed_catalog}/_search", content=gzip.compress(json.dumps(body(TYPO)).encode()),
                            headers={"content-type": "application/json", "content-encoding": "gzip"}).json()
        assert zipped["hits"]["total"]["value"] == answer["hits"]["total"]["value"]
        # nothing near it: the empty answer stands
        assert proxy.post(f"/{indexed_catalog}/_search", json=body("qqxqzzv")).json()["hits"]["hits"] == []
        lines = [{"index": indexed_catalog}, body(TYPO), {}, body("keyboard"), {"index": indexed_catalog}, body("qqxqzzv")]
        ndjson = "".join(json.dumps(line) + "\n" for line in lines)
        responses = proxy.post("/_msearch", content=ndjson, headers={"content-type": "application/x-ndjson",
                                                                     "X-QRW-Explain": "true"}).json()["responses"]
        assert responses[0]["hits"]["total"]["value"] > 0 and responses[0]["qrw"]["recovery"]["hits"] > 0
        assert titles(responses[1]) == titles(plain) and "recovery" not in responses[1]["qrw"]
        assert responses[2]["hits"]["hits"] == [] and responses[2]["qrw"]["recovery"]["hits"] == 0
        metrics = proxy.get("/_qrw/metrics").text
        assert 'qrw_zero_hit_retries_total{outcome="recovered"} 4.0' in metrics
        assert 'qrw_zero_hit_retries_total{outcome="empty"} 2.0' in metrics


@pytest.mark.opensearch
def test_recovery_can_be_turned_off(opensearch_url, indexed_catalog, serve):
    rewriting = engine(zero_hits=False)
    with serve(create_app(rewriting, opensearch_url)) as server, httpx.Client(base_url=server.url, timeout=30) as proxy:
        assert proxy.post(f"/{indexed_catalog}/_search", json=body(TYPO)).json()["hits"]["hits"] == []
    client = RewritingOpenSearch(hosts=[opensearch_url], engine=rewriting)
    assert client.search(index=indexed_catalog, body=body(TYPO))["hits"]["hits"] == []
    rewriting.close()


@pytest.mark.opensearch
def test_no_recovery_where_rewriting_is_off(opensearch_url, indexed_catalog, serve):
    elsewhere = engine(proxy={"rewrite_indices": ["shop*"]})  # products is not rewritten, so not recovered either
    with serve(create_app(elsewhere, opensearch_url)) as server, httpx.Client(base_url=server.url, timeout=30) as proxy:
        assert proxy.post(f"/{indexed_catalog}/_search", json=body(TYPO)).json()["hits"]["hits"] == []
        ndjson = "".join(json.dumps(line) + "\n" for line in [{"index": indexed_catalog}, body(TYPO)])
        answer = proxy.post("/_msearch", content=ndjson, headers={"content-type": "application/x-ndjson"}).json()
        assert answer["responses"][0]["hits"]["hits"] == []
    client = RewritingOpenSearch(hosts=[opensearch_url], engine=elsewhere)
    assert client.search(index=indexed_catalog, body=body(TYPO))["hits"]["hits"] == []
    assert client.msearch(body=[{"index": indexed_catalog}, body(TYPO)])["responses"][0]["hits"]["hits"] == []
    elsewhere.close()


@pytest.mark.opensearch
def test_clients_recover_search_and_msearch(opensearch_url, indexed_catalog, async_search_and_msearch):
    client = RewritingOpenSearch(hosts=[opensearch_url], engine=engine())
    answer = client.search(index=indexed_catalog, body=body(TYPO), headers={"X-QRW-Explain": "true"})
    assert answer["hits"]["total"]["value"] > 0 and answer["qrw"]["recovery"]["hits"] == answer["hits"]["total"]["value"]
    assert client.search(index=indexed_catalog, body=json.dumps(body(TYPO)))["hits"]["total"]["value"] > 0  # a text body
    assert client.search(index=indexed_catalog, body=body(TYPO), scroll="1m")["hits"]["hits"] == []
    responses = client.msearch(body=[{"index": indexed_catalog}, body(TYPO), {"index": indexed_catalog}, body("laptop")])["responses"]
    assert responses[0]["hits"]["total"]["value"] > 0
    assert any("qrw:rewrite:0" in h.get("matched_queries", []) for h in responses[1]["hits"]["hits"])  # rewriting still on
    client.close()

    one, many = async_search_and_msearch(engine(), indexed_catalog, body(TYPO))
    assert one["hits"]["total"]["value"] > 0 and many["responses"][0]["hits"]["total"]["value"] > 0


@pytest.mark.opensearch
def test_eval_gated_system_recovers_like_the_proxy(opensearch_url, indexed_catalog, tmp_path):
    from qrw.eval.compare import SystemSpec, compare_systems
    from qrw.search.connect import open_client

    table = tmp_path / "rewrites.jsonl"
    table.write_text(json.dumps({"query": TYPO, "rewrites": []}) + "\n")
    client = open_client(opensearch_url)
    keyboards = client.search(index=indexed_catalog, body={"query": {"match": {"title": "keyboard"}}, "size": 300})
    qrels = {TYPO: {hit["_id"]: 3 for hit in keyboards["hits"]["hits"]}}
    result = compare_systems(client, indexed_catalog, qrels, [SystemSpec("original"), SystemSpec("gated", str(table))],
                             progress=False, plugin_config=load_config(None, respell={"enabled": False}))
    original, gated = result["systems"]["original"], result["systems"][f"gated:{table.name}"]
    assert original["per_query"][0]["total_hits"] == 0 and original["ndcg@10"] == 0.0
    assert gated["zero_hit_recoveries"] == 1 and gated["per_query"][0]["total_hits"] > 0 and gated["ndcg@10"] > 0


def test_the_retry_keeps_the_first_letter_so_an_unknown_word_is_not_answered_with_another_product(
        opensearch_url, indexed_catalog):
    """``cellphone`` is in no product; fuzzy with no prefix it finds ``telephone`` cords (two edits, first letter
    changed). With the default ``prefix_length`` 1 the retry finds nothing and the empty answer stands, while a
    typo that keeps its first letter (``keyboaard``) is still recovered."""
    from opensearchpy import OpenSearch

    client = OpenSearch(opensearch_url)

    def total(text, config):
        body = fuzzy_body({"query": {"match": {"all_text": text}}, "size": 3}, config)
        return client.search(index=indexed_catalog, body=body)["hits"]["total"]["value"]

    assert total("cellphone", RecoveryConfig(prefix_length=0)) > 0
    assert total("cellphone", ON) == 0
    assert total(TYPO, ON) > 0
