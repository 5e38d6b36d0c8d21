"""The strongest baseline: modules on the node, stemmed analysis, and the CV choice of field weights."""

import pytest

from qrw.errors import NodeError
from qrw.eval.baselines import format_report, select_baseline, weight_grid
from qrw.eval.judgments import load_judgments
from qrw.search import modules
from qrw.search.baseline import CATCH_ALL, CATCH_ALL_JOINED, DEFAULT_BASELINE, VARIANTS, BaselineSpec
from qrw.search.connect import open_client


def test_node_loads_the_modules_the_zip_lacks(opensearch_url):
    client = open_client(opensearch_url)
    loaded = {m["name"] for node in client.nodes.info(metric="plugins")["nodes"].values() for m in node["modules"]}
    assert {"analysis-common", "lang-painless", "search-pipeline-common"} <= loaded


def test_catch_all_is_stemmed_and_accent_folded(opensearch_url, indexed_catalog):
    client = open_client(opensearch_url)
    tokens = client.indices.analyze(index=indexed_catalog, body={"field": CATCH_ALL, "text": "Laptops Café's Notebooks"})
    assert [t["token"] for t in tokens["tokens"]] == ["laptop", "cafe", "notebook"]


def test_plural_query_finds_what_the_singular_finds(opensearch_url, indexed_catalog):
    client = open_client(opensearch_url)

    def top(query):
        body = {**DEFAULT_BASELINE.build(query), "size": 20, "_source": False}
        return [h["_id"] for h in client.search(index=indexed_catalog, body=body)["hits"]["hits"]]

    assert top("toner cartridges") == top("toner cartridge")


def test_joined_pairs_field_bridges_split_and_joined_compounds(opensearch_url, indexed_catalog):
    """``all_text.join``: `mousepad` finds the products titled "Mouse Pad", which the stemmed catch-all alone misses."""
    client = open_client(opensearch_url)
    tokens = client.indices.analyze(index=indexed_catalog, body={"field": CATCH_ALL_JOINED, "text": "Smart Watches"})
    assert sorted(t["token"] for t in tokens["tokens"]) == ["smart", "smartwatch", "watch"]

    def titles(spec):
        body = {**spec.build("mousepad"), "size": 100, "_source": ["title"]}
        return {h["_id"]: h["_source"]["title"] for h in client.search(index=indexed_catalog, body=body)["hits"]["hits"]}

    before, after = titles(VARIANTS["catch_all_brand"]), titles(DEFAULT_BASELINE)
    assert set(before) < set(after)
    assert any("mouse pad" in title.lower() and "mousepad" not in title.lower() for title in after.values())


def test_an_index_without_a_baseline_field_is_refused_not_searched(opensearch_url, indexed_catalog):
    """An index built before ``all_text.join`` would silently be searched with a weaker baseline."""
    from qrw.errors import SearchBackendError
    from qrw.search.runner import require_fields

    client = open_client(opensearch_url)
    require_fields(client, indexed_catalog, DEFAULT_BASELINE.fields, what="the baseline")  # the index qrw builds has them
    old = "qrw-test-old-mapping"
    client.indices.create(index=old, body={"mappings": {"properties": {
        "all_text": {"type": "text"}, "supplier": {"type": "text", "fields": {"stem": {"type": "text"}}}}}})
    try:
        with pytest.raises(SearchBackendError, match=r"has no field all_text\.join, which the baseline searches") as err:
            require_fields(client, old, DEFAULT_BASELINE.fields, what="the baseline")
        assert "qrw index" in err.value.hint
    finally:
        client.indices.delete(index=old)


def test_corrupt_cached_module_jar_is_rejected(tmp_path):
    jar = modules.modules_for("2.19.4")[1].jars[0]
    (tmp_path / jar.file_name).write_bytes(b"not a jar")
    with pytest.raises(NodeError, match="checksum mismatch"):
        modules.fetch_jar(jar, tmp_path)


def test_unpinned_version_has_no_silent_fallback():
    with pytest.raises(NodeError, match="no module jars are pinned"):
        modules.modules_for("9.9.9")


def test_spec_builds_match_or_multi_match_with_options():
    assert DEFAULT_BASELINE.clause("usb hub", boost=0.5, name="n") == {
        "multi_match": {"query": "usb hub", "fields": [CATCH_ALL, "supplier.stem^1", "all_text.join^1"], "type": "most_fields",
                        "boost": 0.5, "_name": "n"}}
    single = BaselineSpec(name="one", fields=(CATCH_ALL,), operator="and")
    assert single.build("usb hub") == {"query": {"match": {CATCH_ALL: {"query": "usb hub", "operator": "and"}}}}
    with pytest.raises(ValueError):
        BaselineSpec(name="none", fields=())


def test_fuzzy_baseline_finds_a_misspelled_word_the_exact_one_misses(opensearch_url, indexed_catalog):
    """``fuzziness`` (an index profile's ``baseline.fuzziness``) reaches OpenSearch as a query option."""
    client = open_client(opensearch_url)
    fuzzy = DEFAULT_BASELINE.model_copy(update={"fuzziness": "AUTO"})
    assert fuzzy.clause("keybord")["multi_match"]["fuzziness"] == "AUTO" and "fuzziness" not in DEFAULT_BASELINE.clause("keybord")["multi_match"]

    def total(spec):
        return client.search(index=indexed_catalog, body={**spec.build("keybord"), "size": 0, "track_total_hits": True})["hits"]["total"]["value"]

    assert total(DEFAULT_BASELINE) == 0 and total(fuzzy) > 0
    for bad in ("3", "sometimes"):
        with pytest.raises(ValueError, match="fuzziness"):
            BaselineSpec(name="bad", fields=(CATCH_ALL,), fuzziness=bad)
    with pytest.raises(ValueError, match="cross_fields"):
        BaselineSpec(name="bad", fields=(CATCH_ALL, "supplier"), type="cross_fields", fuzziness="AUTO")


def test_fuzzy_copy_finds_a_misspelled_word_and_keeps_the_exact_clause_first(opensearch_url, indexed_catalog):
    """``fuzzy_boost``: a low-weight fuzzy copy beside the exact clause, without the joined-pairs field."""
    client = open_client(opensearch_url)
    spec = BaselineSpec(**{**DEFAULT_BASELINE.model_dump(), "fuzzy_boost": 0.1})
    should = spec.build("keybord")["query"]["bool"]["should"]
    assert should[0] == DEFAULT_BASELINE.clause("keybord")
    assert should[1]["multi_match"]["fields"] == [CATCH_ALL, "supplier.stem^1"]  # no .join: fuzziness there matches too much
    assert should[1]["multi_match"]["boost"] == 0.1 and should[1]["multi_match"]["fuzziness"] == "AUTO"

    def top(s, query, size=10):
        return client.search(index=indexed_catalog, body={**s.build(query), "size": size, "_source": ["title"]})["hits"]

    assert top(DEFAULT_BASELINE, "keybord")["total"]["value"] == 0
    assert all("keyboard" in h["_source"]["title"].lower() for h in top(spec, "keybord", 3)["hits"])
    for bad in ({"fuzziness": "AUTO"}, {"fuzzy_boost": 0.0}, {"fuzzy_boost": 2.0},
                {"fields": (CATCH_ALL_JOINED,)}, {"fields": (CATCH_ALL, "title.stem"), "type": "cross_fields"}):
        with pytest.raises(ValueError):
            BaselineSpec(**{**DEFAULT_BASELINE.model_dump(), "fuzzy_boost": 0.1, **bad})


def test_cross_validation_inside_training_folds_chooses_the_shipped_default(opensearch_url, indexed_catalog, judgments_path):
    """Re-derives DEFAULT_BASELINE: the weights must come from the training folds, as docs/eval/baselines.md says."""
    report = select_baseline(open_client(opensearch_url), indexed_catalog, load_judgments(judgments_path),
                             grid=weight_grid(), progress=False)
    assert list(report["chosen"]["fields"]) == list(DEFAULT_BASELINE.fields)
    assert report["chosen"]["type"] == DEFAULT_BASELINE.type
    rows = {row["name"]: row for row in report["variants"]}
    assert set(VARIANTS) <= set(rows) and rows[report["chosen"]["name"]]["chosen"]
    # the chosen one beats today's legacy query on the training folds by a clear margin
    assert report["tuned_cv_ndcg@10"] > rows["legacy_best_fields"]["train_cv_ndcg@10"] + 0.05
    assert "| legacy_best_fields |" in format_report(report)
