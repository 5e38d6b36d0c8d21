"""The opensearch-py drop-in against the real OpenSearch node and the real catalog."""

import pytest
from opensearchpy import OpenSearch

from qrw.plugin import RewritingOpenSearch
from qrw.plugin.config import load_config
from qrw.plugin.rules import parse_rules
from qrw.plugin.table import TableRewriteModel

pytestmark = pytest.mark.opensearch

FIELDS = ["title^3", "name^2", "supplier^2", "short_description", "attributes"]
TABLE = {
    "chromebook": [("notebook", {"exact": 1.0}), ("laptop", {"substitute": 1.0}), ("toaster", {"irrelevant": 1.0})],
    "usb stick": [("usb flash drive", {"exact": 1.0})],
}


@pytest.fixture(scope="module")
def clients(opensearch_url):
    model = TableRewriteModel({q: [(t, {**{"exact": 0, "substitute": 0, "weak": 0, "irrelevant": 0}, **p}) for t, p in rows] for q, rows in TABLE.items()})
    rules = parse_rules(["/^hp (.*)$/  =>", "    PIN: hewlett packard \\1 ^0.5"], "rules")
    rewriting = RewritingOpenSearch(hosts=[opensearch_url], model=model, rules=rules, config=load_config(None, chain={"deadline_ms": 2000}))
    plain = OpenSearch(hosts=[opensearch_url])
    yield rewriting, plain
    rewriting.close()


def ids(response):
    return {hit["_id"] for hit in response["hits"]["hits"]}


def body_for(text, **extra):
    return {"query": {"multi_match": {"query": text, "fields": FIELDS}}, "size": 10000, "_source": False, **extra}


def test_is_an_opensearch_client_and_other_apis_are_untouched(clients, indexed_catalog):
    rewriting, plain = clients
    assert isinstance(rewriting, OpenSearch)
    assert rewriting.count(index=indexed_catalog) == plain.count(index=indexed_catalog)
    assert rewriting.indices.get_alias(name=indexed_catalog) == plain.indices.get_alias(name=indexed_catalog)
    assert rewriting.cat.indices(format="json") and rewriting.info()["version"]["number"].startswith("2.19")


def test_full_weight_rewrites_find_a_superset_with_provenance(clients, indexed_catalog):
    rewriting, plain = clients
    original = plain.search(index=indexed_catalog, body=body_for("chromebook"))
    merged = rewriting.search(index=indexed_catalog, body=body_for("chromebook"))
    assert ids(original) and ids(original) < ids(merged)  # strictly more: the rewrite found more
    names = {name for hit in merged["hits"]["hits"] for name in hit.get("matched_queries", [])}
    assert names == {"qrw:original", "qrw:rewrite:0", "qrw:rewrite:1"}  # toaster (irrelevant) was dropped
    for hit in merged["hits"]["hits"]:
        if hit["_id"] in ids(original):
            assert "qrw:original" in hit["matched_queries"]


def test_filters_aggregations_sort_and_paging_are_preserved(clients, indexed_catalog):
    rewriting, plain = clients
    extra = {
        "size": 5, "from": 2, "sort": [{"price": "desc"}, {"id": "asc"}],
        "aggs": {"brands": {"terms": {"field": "supplier.raw", "size": 3}}},
        "_source": ["title", "price"],
    }
    body = {"query": {"bool": {"must": [{"match": {"title": "chromebook"}}],
                               "filter": [{"range": {"price": {"gte": 100, "lte": 2000}}}]}}, **extra}
    merged = rewriting.search(index=indexed_catalog, body=body, headers={"X-QRW-Explain": "true"})
    assert merged["qrw"]["rewritten"] and merged["qrw"]["model"]["origin"] in ("model", "cache")
    hits = merged["hits"]["hits"]
    assert len(hits) == 5 and all(100 <= hit["_source"]["price"] <= 2000 for hit in hits)
    assert set(hits[0]["_source"]) <= {"title", "price"}
    prices = [hit["sort"][0] for hit in hits]
    assert prices == sorted(prices, reverse=True)
    assert len(merged["aggregations"]["brands"]["buckets"]) <= 3
    unfiltered = rewriting.search(index=indexed_catalog, body={**body, "query": body["query"]["bool"]["must"][0]})
    assert unfiltered["hits"]["total"] != merged["hits"]["total"]  # the filter was kept


def test_msearch_rewrites_each_body_and_rules_pin(clients, indexed_catalog):
    rewriting, plain = clients
    lines = [{"index": indexed_catalog}, body_for("usb stick", size=50),
             {}, {"query": {"match": {"title": "hp toner"}}, "size": 5},
             {"index": indexed_catalog}, {"query": {"match_all": {}}, "size": 1}]
    response = rewriting.msearch(body=lines, index=indexed_catalog, headers={"X-QRW-Explain": "1"})
    first, second, third = response["responses"]
    assert first["qrw"]["rewritten"] and any("qrw:rewrite:0" in h.get("matched_queries", []) for h in first["hits"]["hits"])
    assert [r["text"] for r in second["qrw"]["rewrites"]] == ["hewlett packard toner"]
    assert second["qrw"]["rewrites"][0]["weight"] == 0.5 and second["qrw"]["rewrites"][0]["rule"] == "rules:2"
    assert not third["qrw"]["rewritten"] and third["hits"]["hits"]
    ndjson = "\n".join(__import__("json").dumps(x) for x in lines) + "\n"
    assert len(rewriting.msearch(body=ndjson)["responses"]) == 3


def test_ext_explain_is_stripped_and_text_is_never_syntax(clients, indexed_catalog):
    rewriting, _ = clients
    body = {"query": {"simple_query_string": {"query": "usb stick", "fields": ["title"]}}, "size": 3,
            "ext": {"qrw": {"explain": True}}}
    response = rewriting.search(index=indexed_catalog, body=body)
    assert response["qrw"]["rewritten"]  # OpenSearch would reject an unknown ext section: it was stripped
    weird = rewriting.search(index=indexed_catalog, body=body_for('title:(x OR *) AND {"match_all":{}} \\ " é 日本', size=3))
    assert "hits" in weird


def test_merge_modes_on_the_real_node(opensearch_url, indexed_catalog):
    """Down-weighted rewrites only reorder what the query matches (``confident``, the default); a
    confident one may still bring in what the query's own words miss; ``expand`` lets both add."""
    zeros = {"exact": 0.0, "substitute": 0.0, "weak": 0.0, "irrelevant": 0.0}
    table = {"beamer": [("projector", {**zeros, "substitute": 1.0})],          # down: P(exact)+P(sub) >= keep_min only
             "qqzzx beamer": [("projector", {**zeros, "substitute": 1.0})],    # a query with no results, a down rewrite
             "qqzzx projector": [("projector", {**zeros, "exact": 1.0})],      # no results, a confident rewrite
             "projectorr": [("projector", {**zeros, "substitute": 1.0})]}     # no results, a down-weighted respelling
    plain = OpenSearch(hosts=[opensearch_url])

    def client(mode):
        return RewritingOpenSearch(hosts=[opensearch_url], model=TableRewriteModel(table),
                                   config=load_config(None, chain={"deadline_ms": 2000}, merge={"mode": mode},
                                                      respell={"enabled": False}))  # the model's own respelling here

    confident, expand = client("confident"), client("expand")
    try:
        body = body_for("beamer")
        original = plain.search(index=indexed_catalog, body=body)
        kept = confident.search(index=indexed_catalog, body=body, headers={"X-QRW-Explain": "1"})
        assert kept["qrw"]["rewritten"] and kept["qrw"]["rewrites"][0]["action"] == "down"
        assert 0 < original["hits"]["total"]["value"] == kept["hits"]["total"]["value"] and ids(kept) == ids(original)
        widened = expand.search(index=indexed_catalog, body=body)
        assert widened["hits"]["total"]["value"] > original["hits"]["total"]["value"]

        no_results = body_for("qqzzx beamer", size=10)
        no_results["query"]["multi_match"]["operator"] = "and"
        assert plain.search(index=indexed_catalog, body=no_results)["hits"]["total"]["value"] == 0
        assert confident.search(index=indexed_catalog, body=no_results, headers={"X-QRW-Explain": "1"})["hits"]["total"]["value"] == 0
        assert expand.search(index=indexed_catalog, body=no_results)["hits"]["total"]["value"] > 0
        rescued = body_for("qqzzx projector", size=10)
        rescued["query"]["multi_match"]["operator"] = "and"
        answer = confident.search(index=indexed_catalog, body=rescued, headers={"X-QRW-Explain": "1"})
        assert answer["qrw"]["rewrites"][0]["action"] == "full" and answer["hits"]["total"]["value"] > 0
        assert all(h["matched_queries"] == ["qrw:rewrite:0"] for h in answer["hits"]["hits"])
        typo = body_for("projectorr", size=10)
        assert plain.search(index=indexed_catalog, body=typo)["hits"]["total"]["value"] == 0
        corrected = confident.search(index=indexed_catalog, body=typo, headers={"X-QRW-Explain": "1"})
        assert corrected["qrw"]["rewrites"][0]["action"] == "down" and corrected["hits"]["total"]["value"] > 0  # a respelling may
    finally:
        confident.close()
        expand.close()


BRAND_TABLE = {"toner": [("hp toner", {"exact": 1.0, "substitute": 0.0, "weak": 0.0, "irrelevant": 0.0}),
                         ("laser toner", {"exact": 1.0, "substitute": 0.0, "weak": 0.0, "irrelevant": 0.0})]}


def served_texts(response):
    return {r["text"]: r.get("dropped_by") for r in response["qrw"]["rewrites"]}


def test_the_brand_guard_reads_its_brands_from_the_index_before_the_first_search(opensearch_url, indexed_catalog):
    """With ``guards.brands_field`` the drop-in reads the index's brands as the proxy does at start: a rewrite
    adding a brand (``toner`` -> ``hp toner``) is dropped, not served."""
    config = load_config(None, chain={"deadline_ms": 2000}, guards={"brands_field": "supplier.raw"})
    client = RewritingOpenSearch(hosts=[opensearch_url], model=TableRewriteModel(BRAND_TABLE), config=config)
    try:
        first = client.search(index=indexed_catalog, body=body_for("toner", size=1), headers={"X-QRW-Explain": "true"})
        assert served_texts(first) == {"hp toner": "guards: adds brand 'hp'", "laser toner": None}
        assert client.qrw.brands_ask() is None  # read once, not before every search
    finally:
        client.close()


def test_a_failed_brand_request_is_asked_again_later_and_the_search_still_answers(opensearch_url, indexed_catalog):
    config = load_config(None, chain={"deadline_ms": 2000}, guards={"brands_field": "supplier.raw"})
    client = RewritingOpenSearch(hosts=[opensearch_url], model=TableRewriteModel(BRAND_TABLE), config=config)
    try:
        # an index that does not exist refuses the brand request (404); the search on the real index still runs
        client._read_brands("no-such-index", None)
        assert client.qrw.brands_ask() is None  # not again at once
        assert client.qrw.brands_ask(now=10**9) is not None  # but after BRANDS_RETRY_S
        answer = client.search(index=indexed_catalog, body=body_for("toner", size=1), headers={"X-QRW-Explain": "true"})
        assert answer["hits"]["hits"]
    finally:
        client.close()



def test_x_qrw_rewrite_off_sends_the_search_as_written(clients, indexed_catalog):
    rewriting, plain = clients
    for call in (lambda c, **kw: c.search(index=indexed_catalog, body=body_for("chromebook"), **kw),
                 lambda c, **kw: c.msearch(index=indexed_catalog, body=[{}, body_for("chromebook")], **kw)):
        as_written = call(rewriting, headers={"X-QRW-Rewrite": "off", "X-QRW-Explain": "true"})
        expected = call(plain)
        strip = lambda r: {k: v for k, v in r.items() if k != "took"}  # noqa: E731
        if "responses" in expected:
            assert [strip(r)["hits"] for r in as_written["responses"]] == [strip(r)["hits"] for r in expected["responses"]]
        else:
            assert as_written["hits"] == expected["hits"] and "qrw" not in as_written
    assert ids(rewriting.search(index=indexed_catalog, body=body_for("chromebook"))) > ids(expected["responses"][0])
