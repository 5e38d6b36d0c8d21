"""Index respelling: the typo filter and the request (pure), and the engine, proxy, both clients and `qrw eval`
against the real node's term suggester."""

import json

import httpx
import pytest
from opensearchpy import OpenSearch

from qrw.plugin import RewritingOpenSearch
from qrw.plugin.config import RespellConfig, load_config
from qrw.plugin.engine import RewriteEngine
from qrw.plugin.merge import WeightedRewrite
from qrw.plugin.proxy import create_app
from qrw.plugin.respell import (
    Respelling,
    held_body,
    held_words,
    neighbouring_keys,
    plausible_typo,
    respelled,
    suggest_body,
    with_respelling,
    words_to_confirm,
    worth_asking,
)
from qrw.plugin.table import TableRewriteModel

DEBUG = {"debug_networks": ["127.0.0.1/32"]}
TYPO = "gaming keybord"  # "gaming" still matches: zero-hit recovery cannot help, the index knows "keyboard"


# -- the typo filter ----------------------------------------------------------------------------------


@pytest.mark.parametrize("typed, suggested", [
    ("keybord", "keyboard"),     # a letter dropped
    ("heeadset", "headset"),     # a letter doubled
    ("cabel", "cable"),          # two neighbours swapped
    ("stik", "stick"),
    ("mpuse", "mouse"),          # p is next to o on the keyboard
    ("Keybord", "keyboard"),     # case does not matter
])
def test_typing_slips_are_plausible(typed, suggested):
    assert plausible_typo(typed, suggested)


@pytest.mark.parametrize("typed, suggested", [
    ("frying", "flying"),        # r and l are far apart: a real word the catalog lacks, not a typo
    ("thumb", "thule"),          # two edits
    ("tent", "test"),
    ("beans", "beads"),
    ("2060", "2070"),            # numbers never change
    ("rtx2060", "rtx2070"),
    ("keyboard", "keyboard"),    # nothing to fix
    ("café", "cafe"),            # not a key slip on a QWERTY keyboard
])
def test_other_changes_are_not(typed, suggested):
    assert not plausible_typo(typed, suggested)


def test_a_vowel_for_a_vowel_only_in_longer_words_and_only_when_asked():
    assert plausible_typo("monitur", "monitor") and plausible_typo("calculater", "calculator")
    assert not plausible_typo("monitur", "monitor", vowel_slips=False)
    assert not plausible_typo("bose", "base") and not plausible_typo("lego", "logo")  # short words: real neighbours
    assert not plausible_typo("monitur", "monitxr")  # a consonant is no vowel slip
    found = respelled("monitur arm", answer(("monitur", 0, ["monitor"])))  # u and o are not neighbouring keys
    assert found.text == "monitor arm" and respelled("monitur arm", answer(("monitur", 0, ["monitor"])), vowel_slips=False) is None


def test_a_consonant_for_its_sound_alike_only_in_longer_words_and_only_when_asked():
    assert plausible_typo("labtop", "laptop") and plausible_typo("headphomes", "headphones")  # m/n: keys
    assert plausible_typo("keypoard", "keyboard") and plausible_typo("externel", "external")
    assert plausible_typo("adabter", "adapter") and plausible_typo("calkulator", "calculator")
    assert not plausible_typo("labtop", "laptop", sound_slips=False)
    assert not plausible_typo("bads", "pads") and not plausible_typo("cape", "gape")  # short words: real neighbours
    assert not plausible_typo("labtop", "lamtop")  # b and m: not alike, and not neighbouring keys either
    found = respelled("labtop bag", answer(("labtop", 0, ["laptop"])))  # b and p are far apart on the keyboard
    assert found.text == "laptop bag" and respelled("labtop bag", answer(("labtop", 0, ["laptop"])), sound_slips=False) is None


def test_neighbouring_keys_follow_the_qwerty_rows():
    assert neighbouring_keys("a", "s") and neighbouring_keys("a", "q") and neighbouring_keys("a", "w")
    assert neighbouring_keys("s", "z") and neighbouring_keys("s", "x") and neighbouring_keys("b", "n")
    assert not neighbouring_keys("a", "d") and not neighbouring_keys("r", "l") and not neighbouring_keys("a", "e")
    assert not neighbouring_keys("a", "a") and not neighbouring_keys("a", "1")


def test_suggest_body_matches_nothing_and_asks_only_for_missing_words():
    request = suggest_body("usb stik", RespellConfig(field="title.std", max_edits=1, join_split_words=False))
    assert request["query"] == {"match_none": {}} and request["size"] == 0 and "aggs" not in request
    assert suggest_body("keybord", RespellConfig())["query"] == {"match_none": {}}  # one word: nothing to join
    term = request["suggest"]["qrw_respell"]["term"]
    assert term["field"] == "title.std" and term["suggest_mode"] == "missing" and term["max_edits"] == 1
    assert request["suggest"]["qrw_respell"]["text"] == "usb stik"


def test_only_queries_with_a_long_enough_word_are_asked_about():
    config = RespellConfig()
    assert worth_asking("usb stik", config) and not worth_asking("tv 55", config) and not worth_asking("rtx2060 ps4", config)
    assert not worth_asking("labtop", RespellConfig(min_word_length=7))
    assert worth_asking("ear pad", config)  # short words, but "earpad" could be what the catalog writes
    assert not worth_asking("ear pad", RespellConfig(join_split_words=False)) and not worth_asking("tv 4k", config)


def test_suggest_body_counts_each_adjacent_pair_joined_and_as_a_phrase():
    request = suggest_body("Gaming key board 2060", RespellConfig(field="title.std"))
    filters = request["aggs"]["qrw_join"]["filters"]["filters"]
    assert filters == {"joined:gamingkey": {"term": {"title.std": "gamingkey"}},
                       "split:gaming key": {"match_phrase": {"title.std": "gaming key"}},
                       "joined:keyboard": {"term": {"title.std": "keyboard"}},
                       "split:key board": {"match_phrase": {"title.std": "key board"}}}  # "board 2060": digits
    assert request["query"] == {"bool": {"should": list(filters.values())}} and request["size"] == 0  # no hit comes back
    assert request["suggest"]["qrw_respell"]["text"] == "Gaming key board 2060"
    assert len(suggest_body(" ".join(["word"] * 30), RespellConfig())["aggs"]["qrw_join"]["filters"]["filters"]) == 2  # capped


def test_a_pair_the_catalog_writes_joined_more_often_is_joined():
    counted = {"aggregations": {"qrw_join": {"buckets": {
        "joined:gamingkey": {"doc_count": 0}, "split:gaming key": {"doc_count": 0},
        "joined:keyboard": {"doc_count": 233}, "split:key board": {"doc_count": 0}}}}}
    assert respelled("Gaming Key Board", counted) == Respelling("Gaming keyboard", (("Key Board", "keyboard"),))
    assert respelled("Gaming Key Board", counted, join_min_docs=300) is None  # too few documents hold "keyboard"
    split_more = {"aggregations": {"filters#qrw_join": {"buckets": {"joined:harddrive": {"doc_count": 1},
                                                                   "split:hard drive": {"doc_count": 95}}}}}
    assert respelled("hard drive", split_more, join_min_docs=1) is None  # the catalog writes it as two words
    tie = {"aggregations": {"qrw_join": {"buckets": {"joined:harddrive": {"doc_count": 5}, "split:hard drive": {"doc_count": 5}}}}}
    assert respelled("hard drive", tie) is None
    # a typo fix and a join never overlap: the counts were for the typed words
    both = {**answer(("bord", 4, ["board"])), "aggregations": {"qrw_join": {"buckets": {
        "joined:keybord": {"doc_count": 9}, "split:key bord": {"doc_count": 0}}}}}
    assert respelled("key bord", both) == Respelling("key board", (("bord", "board"),))
    # of two overlapping pairs the left one is joined; a missing bucket or a bad count joins nothing
    chain = {"aggregations": {"qrw_join": {"buckets": {"joined:ab": {"doc_count": 4}, "split:a b": {"doc_count": 0},
                                                      "joined:bc": {"doc_count": 9}, "split:b c": {"doc_count": 0}}}}}
    assert respelled("a b c", chain) == Respelling("ab c", (("a b", "ab"),))
    assert respelled("a b", {"aggregations": {"qrw_join": {"buckets": {"joined:ab": {"doc_count": 4}}}}}) is None
    assert respelled("a b", {"aggregations": {"qrw_join": {"buckets": {"joined:ab": {"doc_count": True},
                                                                      "split:a b": {"doc_count": 0}}}}}) is None


def answer(*entries):
    return {"hits": {"hits": []}, "suggest": {"qrw_respell": [
        {"text": text, "offset": offset, "length": len(text), "options": [{"text": o, "score": 0.8, "freq": 3} for o in options]}
        for text, offset, options in entries]}}


def test_respelled_replaces_each_word_by_its_first_plausible_fix():
    found = respelled("usb stik 2060", answer(("usb", 0, []), ("stik", 4, ["stiff", "stick"]), ("2060", 9, ["2070"])))
    assert found == Respelling("usb stick 2060", (("stik", "stick"),))  # "stiff" is two edits; numbers stay
    assert respelled("frying pan", answer(("frying", 0, ["flying"]))) is None
    assert respelled("x", {"error": {"type": "x"}}) is None and respelled("x", {"hits": {}}) is None
    typed_keys = {"suggest": {"term#qrw_respell": answer(("labtop", 0, ["laptop"]))["suggest"]["qrw_respell"]}}
    assert respelled("labtop", typed_keys, sound_slips=False) is None  # b and p are not neighbouring keys
    assert respelled("labtop", typed_keys).text == "laptop"  # but they sound alike
    assert respelled("lapyop", {"suggest": {"term#qrw_respell": answer(("lapyop", 0, ["laptop"]))["suggest"]["qrw_respell"]}}).text == "laptop"
    assert respelled("abc", answer(("abcdef", 0, ["abcdeg"]))) is None  # an entry outside the text is ignored


def test_the_page_tells_a_joined_compound_from_a_fixed_typo():
    from qrw.sandbox.page import respelled_word

    assert respelled_word("Key Board", "keyboard").endswith("(joined: the catalog writes it as one word)")
    assert "term suggester" in respelled_word("stik", "stick") and "term suggester" in respelled_word("key bord", "keyboard")


def test_only_a_multi_shard_answer_that_proposes_a_correction_is_checked():
    single = {**answer(("Tripdos", 0, ["tripods"])), "_shards": {"total": 1, "successful": 1}}
    several = {**answer(("Tripdos", 0, ["tripods"]), ("camera", 8, [])), "_shards": {"total": 3, "successful": 3}}
    assert words_to_confirm("Tripdos camera", single) == ()  # one shard: "missing" already means the whole index
    assert words_to_confirm("Tripdos camera", several) == ("tripdos",)
    assert words_to_confirm("frying pan", {**answer(("frying", 0, ["flying"])), "_shards": {"total": 3}}) == ()  # no fix
    assert words_to_confirm("Tripdos", answer(("Tripdos", 0, ["tripods"]))) == ("tripdos",)  # shards unknown: check
    check = held_body(["tripdos", "tripod"], RespellConfig(field="text"))
    assert check["size"] == 0 and check["aggs"]["qrw_held"]["filters"]["filters"]["tripod"] == {"match": {"text": {"query": "tripod"}}}
    assert len(check["query"]["bool"]["should"]) == 2


def test_a_word_the_check_finds_in_the_index_is_kept_as_typed():
    def counts(**words):
        return {"aggregations": {"qrw_held": {"buckets": {w: {"doc_count": n} for w, n in words.items()}}}}
    assert held_words(counts(tripod=1, tripdos=0), ["tripod", "tripdos"]) == {"tripod"}
    typed_keys = {"aggregations": {"filters#qrw_held": counts(tripod=0)["aggregations"]["qrw_held"]}}
    assert held_words(typed_keys, ["tripod"]) == frozenset()
    assert held_words(counts(tripod=1), ["tripod", "tripdos"]) is None  # a bucket missing: unconfirmed
    assert held_words(None, ["tripod"]) is None and held_words({"error": {}}, ["tripod"]) is None
    both = answer(("tripod", 0, ["tripods"]), ("stik", 7, ["stick"]))
    assert respelled("tripod stik", both, held={"tripod"}) == Respelling("tripod stick", (("stik", "stick"),))
    assert respelled("tripod", answer(("tripod", 0, ["tripods"])), held={"tripod"}) is None


def test_a_respelling_the_model_also_served_is_merged_once_at_the_larger_weight():
    kept = [WeightedRewrite("Gaming Keyboard", 0.3, False), WeightedRewrite("keyboard", 0.3, False)]
    merged = with_respelling(kept, Respelling("gaming keyboard", (("keybord", "keyboard"),)), 0.5)
    assert merged == [WeightedRewrite("Gaming Keyboard", 0.5, True), WeightedRewrite("keyboard", 0.3, False)]
    assert with_respelling(kept, None, 0.5) == kept
    added = with_respelling([], Respelling("gaming keyboard", ()), 0.5)
    assert added == [WeightedRewrite("gaming keyboard", 0.5, True)]


# -- against the real node ----------------------------------------------------------------------------


def body(text, **extra):
    return {"query": {"multi_match": {"query": text, "fields": ["all_text", "supplier.stem", "all_text.join"],
                                      "type": "most_fields"}}, "size": 10, "_source": ["title"], **extra}


def titles(response):
    return [hit["_source"]["title"] for hit in response["hits"]["hits"]]


def keyboards(response, top=5):
    return sum("keyboard" in t.lower() for t in titles(response)[:top])


def engine(**respell):
    model = TableRewriteModel({"laptop": [("notebook", {"exact": 1.0, "substitute": 0, "weak": 0, "irrelevant": 0})]})
    return RewriteEngine(load_config(None, chain={"deadline_ms": 2000}, proxy=DEBUG, respell=respell), model)


@pytest.mark.opensearch
def test_engine_asks_once_and_serves_the_respelling(opensearch_url, indexed_catalog):
    client = OpenSearch(hosts=[opensearch_url])
    direct = client.search(index=indexed_catalog, body=body(TYPO))
    assert keyboards(direct) == 0  # gaming things, no keyboard: the typo matches nothing, "gaming" does
    rewriting = engine()
    ask = rewriting.respell_ask(body(TYPO), indexed_catalog)
    found = rewriting.respell_answer(ask, client.search(index=indexed_catalog, body=ask.body))
    assert found == Respelling("gaming keyboard", (("keybord", "keyboard"),))
    assert rewriting.respell_ask(body(TYPO), indexed_catalog) is None  # remembered
    new_body, report = rewriting.rewrite_body(body(TYPO), index=indexed_catalog, explain=True)
    assert report["respelling"] == {"text": "gaming keyboard", "words": [["keybord", "keyboard"]], "weight": 1.0,
                                    "name": "qrw:rewrite:0"} and report["rewritten"]
    assert keyboards(client.search(index=indexed_catalog, body=new_body)) >= 4
    # words the index holds, and a word the catalog lacks that is no typo of its words, are not asked about twice
    for text in ("gaming keyboard", "frying pan"):
        ask = rewriting.respell_ask(body(text), indexed_catalog)
        assert rewriting.respell_answer(ask, client.search(index=indexed_catalog, body=ask.body)) is None
        assert rewriting.respell_ask(body(text), indexed_catalog) is None
        assert rewriting.rewrite_body(body(text), index=indexed_catalog)[0] == body(text)
    # a failed suggest request is not remembered: the next search asks again
    ask = rewriting.respell_ask(body("usb stik"), indexed_catalog)
    assert rewriting.respell_answer(ask, None) is None and rewriting.respell_ask(body("usb stik"), indexed_catalog) is not None
    assert engine(enabled=False).respell_ask(body(TYPO), indexed_catalog) is None
    rewriting.close()


@pytest.mark.opensearch
def test_a_split_word_the_catalog_writes_joined_is_joined_by_the_engine_the_proxy_and_eval(opensearch_url, indexed_catalog, serve):
    """``key board``: both words are in the index, so the suggester has nothing to say, and the baseline ranks
    boards and keys; the catalog writes "keyboard" (hundreds of products) and never "key board"."""
    from qrw.eval.compare import index_respellings

    client = OpenSearch(hosts=[opensearch_url])
    split = "gaming key board"
    assert keyboards(client.search(index=indexed_catalog, body=body(split))) <= 2  # a key, a board game, a case
    rewriting = engine()
    ask = rewriting.respell_ask(body(split), indexed_catalog)
    found = rewriting.respell_answer(ask, client.search(index=indexed_catalog, body=ask.body))
    assert found == Respelling("gaming keyboard", (("key board", "keyboard"),))
    assert keyboards(client.search(index=indexed_catalog, body=rewriting.rewrite_body(body(split), index=indexed_catalog)[0])) >= 4
    for two_words in ("hard drive", "power bank"):  # the catalog writes these apart: nothing to join
        ask = rewriting.respell_ask(body(two_words), indexed_catalog)
        assert rewriting.respell_answer(ask, client.search(index=indexed_catalog, body=ask.body)) is None
    rewriting.close()
    with serve(create_app(engine(), opensearch_url)) as server, httpx.Client(base_url=server.url, timeout=30) as proxy:
        answer = proxy.post(f"/{indexed_catalog}/_search", json=body(split), headers={"X-QRW-Explain": "true"}).json()
        assert answer["qrw"]["respelling"]["words"] == [["key board", "keyboard"]] and keyboards(answer) >= 4
    assert index_respellings(client, indexed_catalog, [split, "hard drive"], RespellConfig()) == {split: found}
    assert index_respellings(client, indexed_catalog, [split], RespellConfig(join_split_words=False)) == {}


@pytest.mark.opensearch
def test_a_model_rewrite_with_the_same_words_is_served_once_at_the_respelling_weight(opensearch_url, indexed_catalog):
    from qrw.sandbox.page import why

    substitute = {"exact": 0.1, "substitute": 0.8, "weak": 0.05, "irrelevant": 0.05}  # kept down-weighted
    # the model rewrites the respelled text; with copies allowed it may propose those very words
    rewriting = RewriteEngine(load_config(None, chain={"deadline_ms": 2000}, proxy=DEBUG, guards={"drop_copies": False}),
                              TableRewriteModel({"gaming keyboard": [("gaming keyboard", substitute)]}))
    ask = rewriting.respell_ask(body(TYPO), indexed_catalog)
    rewriting.respell_answer(ask, OpenSearch(hosts=[opensearch_url]).search(index=indexed_catalog, body=ask.body))
    new_body, report = rewriting.rewrite_body(body(TYPO), index=indexed_catalog, explain=True)
    clauses = new_body["query"]["bool"]["should"]
    assert len(clauses) == 2 and clauses[1]["multi_match"]["boost"] == 1.0  # one rewrite clause, at the larger weight
    row = next(r for r in report["rewrites"] if r["text"] == "gaming keyboard")
    assert row["action"] == "down" and row["weight"] == 1.0 and row["served_as"] == "index respelling"
    assert why(row).endswith("served at the larger weight of the index respelling")
    rewriting.close()


@pytest.mark.opensearch
def test_the_model_rewrites_the_respelled_query(opensearch_url, indexed_catalog, serve):
    """What the user meant is the respelled text: the model, the guards and the gate work on it, not on the typo."""
    kept = {"exact": 0.1, "substitute": 0.8, "weak": 0.05, "irrelevant": 0.05}
    table = TableRewriteModel({TYPO: [("gaming mouse", kept)], "gaming keyboard": [("mechanical keyboard", kept)]})
    rewriting = RewriteEngine(load_config(None, chain={"deadline_ms": 2000}, proxy=DEBUG), table)
    assert rewriting.needs_model(body(TYPO), indexed_catalog)  # the typo's text: not cached yet
    ask = rewriting.respell_ask(body(TYPO), indexed_catalog)
    rewriting.respell_answer(ask, OpenSearch(hosts=[opensearch_url]).search(index=indexed_catalog, body=ask.body))
    assert rewriting.model_text(TYPO, indexed_catalog) == "gaming keyboard"
    assert rewriting.model_text(TYPO, "another-index") == TYPO  # respellings are per index
    as_typed = RewriteEngine(load_config(None, chain={"deadline_ms": 2000}, proxy=DEBUG,
                                         respell={"rewrite_respelled": False}), table)
    as_typed.respell_answer(ask, OpenSearch(hosts=[opensearch_url]).search(index=indexed_catalog, body=ask.body))
    typed_body, typed_report = as_typed.rewrite_body(body(TYPO), index=indexed_catalog, explain=True)
    assert typed_report["query"] == TYPO and [r["text"] for r in typed_report["rewrites"]] == ["gaming mouse"]
    assert typed_report["respelling"]["text"] == "gaming keyboard"  # still served
    as_typed.close()
    new_body, report = rewriting.rewrite_body(body(TYPO), index=indexed_catalog, explain=True)
    assert report["query"] == "gaming keyboard" and [r["text"] for r in report["rewrites"]] == ["mechanical keyboard"]
    original, respelling, group = new_body["query"]["bool"]["should"]
    assert respelling["multi_match"]["query"] == "gaming keyboard"  # the respelling may add documents
    assert [c["multi_match"]["query"] for c in group["bool"]["should"]] == ["mechanical keyboard"]
    # the down-weighted rewrite of the respelled text reorders what the typo or its respelling match
    scope = group["bool"]["filter"][0]["bool"]["should"]
    assert [c["multi_match"]["query"] for c in scope] == [TYPO, "gaming keyboard"]
    assert rewriting.rewrite_body(body(TYPO), index=indexed_catalog)[0] == new_body  # the quiet path serves the same
    assert not rewriting.needs_model(body(TYPO), indexed_catalog)  # the respelled text's outputs are cached
    with serve(create_app(rewriting, opensearch_url)) as server, httpx.Client(base_url=server.url, timeout=30) as proxy:
        answer = proxy.post(f"/{indexed_catalog}/_search", json=body(TYPO), headers={"X-QRW-Explain": "true"}).json()
        assert [r["text"] for r in answer["qrw"]["rewrites"]] == ["mechanical keyboard"]
        first = proxy.post(f"/{indexed_catalog}/_search", json=body(TYPO)).json()
        assert titles(proxy.post(f"/{indexed_catalog}/_search", json=body(TYPO)).json()) == titles(first)  # remembered
    rewriting.close()


@pytest.mark.opensearch
def test_proxy_serves_the_respelling_for_search_and_msearch(opensearch_url, indexed_catalog, serve):
    rewriting = engine()
    with serve(create_app(rewriting, opensearch_url)) as server, httpx.Client(base_url=server.url, timeout=30) as proxy:
        answer = proxy.post(f"/{indexed_catalog}/_search", json=body(TYPO), headers={"X-QRW-Explain": "true"}).json()
        assert keyboards(answer) >= 4 and answer["qrw"]["respelling"]["text"] == "gaming keyboard"
        again = proxy.post(f"/{indexed_catalog}/_search", json=body(TYPO), headers={"X-QRW-Explain": "true"})
        assert titles(again.json()) == titles(answer)  # from the remembered answer
        assert again.headers["x-qrw-explain"].startswith("rewritten=1/1; kept=0; respelled=1; recovered=0;")
        calls = []
        original_rewrite = rewriting.rewrite_body
        rewriting.rewrite_body = lambda *a, **k: calls.append(a) or original_rewrite(*a, **k)
        plain_bodies = [proxy.post(f"/{indexed_catalog}/_search", json=body(TYPO)).json() for _ in range(3)]
        assert all(titles(b) == titles(answer) for b in plain_bodies)
        assert len(calls) == 1  # the respelled body is remembered like any rewritten one: one rewrite, then bytes
        del rewriting.rewrite_body
        plain = proxy.post(f"/{indexed_catalog}/_search", json=body("gaming keyboard")).json()
        assert titles(plain) == titles(OpenSearch(hosts=[opensearch_url]).search(index=indexed_catalog, body=body("gaming keyboard")))
        lines = [{"index": indexed_catalog}, body("usb stik"), {}, body("frying pan")]
        ndjson = "".join(json.dumps(line) + "\n" for line in lines)
        responses = proxy.post("/_msearch", content=ndjson, headers={"content-type": "application/x-ndjson",
                                                                     "X-QRW-Explain": "true"}).json()["responses"]
        assert responses[0]["qrw"]["respelling"]["text"] == "usb stick"
        assert "respelling" not in responses[1]["qrw"]
        metrics = proxy.get("/_qrw/metrics").text
        assert 'qrw_index_respellings_total{outcome="respelled"} 2.0' in metrics  # asked once per new query text
        assert 'qrw_index_respellings_total{outcome="unchanged"} 2.0' in metrics  # gaming keyboard, frying pan
    rewriting.close()


@pytest.mark.opensearch
def test_proxy_without_an_answer_in_time_sends_the_query_as_it_was(opensearch_url, indexed_catalog, serve):
    rewriting = engine(timeout_ms=0.001)
    with serve(create_app(rewriting, opensearch_url)) as server, httpx.Client(base_url=server.url, timeout=30) as proxy:
        answer = proxy.post(f"/{indexed_catalog}/_search", json=body(TYPO), headers={"X-QRW-Explain": "true"}).json()
        assert keyboards(answer) == 0 and "respelling" not in answer["qrw"] and answer["hits"]["total"]["value"] > 0
        assert 'qrw_index_respellings_total{outcome="failed"} 1.0' in proxy.get("/_qrw/metrics").text
    rewriting.close()


@pytest.mark.opensearch
def test_an_index_without_the_field_is_not_asked_again(opensearch_url, indexed_catalog, serve, caplog):
    """A 400 for the suggest request (no such field) turns respelling off for that index until the cache TTL:
    one failed request, not one per query; the searches themselves are answered as usual."""
    rewriting = engine(field="no_such_field.std")
    with serve(create_app(rewriting, opensearch_url)) as server, httpx.Client(base_url=server.url, timeout=30) as proxy:
        for text in (TYPO, "usb stik", "blutooth speaker"):
            assert proxy.post(f"/{indexed_catalog}/_search", json=body(text)).status_code == 200
        metrics = proxy.get("/_qrw/metrics").text
        assert 'qrw_index_respellings_total{outcome="refused"} 1.0' in metrics
        assert 'qrw_index_respellings_total{outcome="respelled"}' not in metrics
        assert 'qrw_index_respellings_total{outcome="failed"}' not in metrics
    assert "no mapping found for field [no_such_field.std]" in caplog.text and "respell.field" in caplog.text
    rewriting.close()
    client = RewritingOpenSearch(hosts=[opensearch_url], engine=engine(field="no_such_field.std"))
    assert client.search(index=indexed_catalog, body=body(TYPO))["hits"]["total"]["value"] > 0
    assert client.qrw.respell_ask(body("usb stik"), indexed_catalog) is None  # refused: not asked again
    assert client.qrw.respell_ask(body("usb stik"), "another-index") is not None
    client.close()


@pytest.mark.opensearch
def test_respelling_only_where_rewriting_is_on(opensearch_url, indexed_catalog, serve):
    elsewhere = RewriteEngine(load_config(None, proxy={**DEBUG, "rewrite_indices": ["shop*"]}), None)
    assert elsewhere.respell_ask(body(TYPO), indexed_catalog) is None
    with serve(create_app(elsewhere, opensearch_url)) as server, httpx.Client(base_url=server.url, timeout=30) as proxy:
        assert keyboards(proxy.post(f"/{indexed_catalog}/_search", json=body(TYPO)).json()) == 0
    elsewhere.close()


@pytest.mark.opensearch
def test_clients_serve_the_respelling(opensearch_url, indexed_catalog, async_search_and_msearch):
    client = RewritingOpenSearch(hosts=[opensearch_url], engine=engine())
    answer = client.search(index=indexed_catalog, body=body(TYPO), headers={"X-QRW-Explain": "true"})
    assert keyboards(answer) >= 4 and answer["qrw"]["respelling"]["words"] == [["keybord", "keyboard"]]
    assert keyboards(client.search(index=indexed_catalog, body=json.dumps(body(TYPO)))) >= 4  # a text body
    responses = client.msearch(body=[{"index": indexed_catalog}, body("usb stik")], headers={"X-QRW-Explain": "true"})["responses"]
    assert responses[0]["qrw"]["respelling"]["text"] == "usb stick"
    client.close()

    one, many = async_search_and_msearch(engine(), indexed_catalog, body(TYPO))
    assert keyboards(one) >= 4 and keyboards(many["responses"][0]) >= 4


@pytest.mark.opensearch
def test_eval_gated_system_respells_like_the_proxy(opensearch_url, indexed_catalog, tmp_path):
    from qrw.eval.compare import SystemSpec, compare_systems
    from qrw.search.connect import open_client

    table = tmp_path / "rewrites.jsonl"
    table.write_text(json.dumps({"query": TYPO, "rewrites": []}) + "\n"
                     + json.dumps({"query": "gaming keyboard", "rewrites": [{"text": "keyboard gamer", "tag": "substitute"}]}) + "\n")
    client = open_client(opensearch_url)
    found = client.search(index=indexed_catalog, body={"query": {"match": {"title": {"query": "gaming keyboard", "operator": "and"}}},
                                                        "size": 100})
    qrels = {TYPO: {hit["_id"]: 3 for hit in found["hits"]["hits"]}}
    result = compare_systems(client, indexed_catalog, qrels, [SystemSpec("original"), SystemSpec("gated", str(table))],
                             progress=False)
    original, gated = result["systems"]["original"], result["systems"][f"gated:{table.name}"]
    assert gated["index_respellings"] == 1 and gated["ndcg@10"] > original["ndcg@10"] + 0.5
    assert gated["per_query"][0]["decisions"][-1]["action"] == "respelling"
    assert gated["per_query"][0]["rewrites"] == ["keyboard gamer"]  # as the engine: the model rewrote the respelled text
    assert gated["per_query"][0]["decisions"][0]["action"] == "down"
    off = compare_systems(client, indexed_catalog, qrels, [SystemSpec("gated", str(table))], progress=False,
                          plugin_config=load_config(None, respell={"enabled": False}))
    assert off["systems"][f"gated:{table.name}"]["index_respellings"] == 0
    # an index without the field: the evaluation goes on without respellings, as the proxy would serve it
    no_field = compare_systems(client, indexed_catalog, qrels, [SystemSpec("gated", str(table))], progress=False,
                               plugin_config=load_config(None, respell={"field": "no_such_field.std"}))
    assert no_field["systems"][f"gated:{table.name}"]["index_respellings"] == 0


@pytest.fixture(scope="module")
def sharded_index(opensearch_url):
    """A three-shard index where ``tripod`` is held by one product (so by one shard) and ``tripods`` by thirty."""
    from opensearchpy import helpers

    client = OpenSearch(hosts=[opensearch_url])
    name = "qrw-respell-sharded"
    client.indices.delete(index=name, ignore_unavailable=True)
    client.indices.create(index=name, body={"settings": {"number_of_shards": 3, "number_of_replicas": 0},
                                            "mappings": {"properties": {"text": {"type": "text"}}}})
    docs = [{"_index": name, "_id": f"p{i}", "_source": {"text": f"camera tripods model {i}"}} for i in range(30)]
    docs.append({"_index": name, "_id": "solo", "_source": {"text": "compact travel tripod"}})
    helpers.bulk(client, docs, refresh=True)
    shards = {client.search_shards(index=name, routing=doc["_id"])["shards"][0][0]["shard"] for doc in docs}
    assert shards == {0, 1, 2}  # the thirty spread over every shard, so two shards lack "tripod"
    yield name
    client.indices.delete(index=name, ignore_unavailable=True)


def text_body(text):
    return {"query": {"match": {"text": text}}, "size": 40}


@pytest.mark.opensearch
def test_a_word_one_shard_holds_is_not_corrected(opensearch_url, sharded_index, serve, async_search_and_msearch):
    """``suggest_mode: missing`` is per shard: the two shards without ``tripod`` suggest ``tripods`` for it. The
    index-wide check keeps the correctly spelled word, on every path; a real typo is still corrected."""
    client = OpenSearch(hosts=[opensearch_url])
    suggest = client.search(index=sharded_index, body=suggest_body("tripod", RespellConfig(field="text")))
    assert respelled("tripod", suggest) == Respelling("tripods", (("tripod", "tripods"),))  # what the check prevents

    rewriting = engine(field="text")
    for text, expected in (("tripod", None), ("tripdos", Respelling("tripods", (("tripdos", "tripods"),)))):
        ask = rewriting.respell_ask(text_body(text), sharded_index)
        first = client.search(index=sharded_index, body=ask.body)
        check = rewriting.respell_check(ask, first)
        assert check is not None  # three shards and a proposed fix: checked
        assert rewriting.respell_answer(ask, first, held=None) is None  # an unconfirmed answer is not remembered
        assert rewriting.respell_ask(text_body(text), sharded_index) is not None
        held = client.search(index=sharded_index, body=check.body)
        assert rewriting.respell_answer(ask, first, held=held) == expected
    rewriting.close()

    def ids(response):
        return sorted(hit["_id"] for hit in response["hits"]["hits"])

    plain = ids(client.search(index=sharded_index, body=text_body("tripod")))
    assert plain == ["solo"]
    wrapped = RewritingOpenSearch(hosts=[opensearch_url], engine=engine(field="text"))
    answer_ = wrapped.search(index=sharded_index, body=text_body("tripod"), headers={"X-QRW-Explain": "true"})
    assert ids(answer_) == plain and "respelling" not in answer_["qrw"]
    typo = wrapped.search(index=sharded_index, body=text_body("tripdos"), headers={"X-QRW-Explain": "true"})
    assert typo["qrw"]["respelling"]["text"] == "tripods" and len(typo["hits"]["hits"]) == 30
    wrapped.close()

    one, many = async_search_and_msearch(engine(field="text"), sharded_index, text_body("tripod"))
    assert ids(one) == plain and ids(many["responses"][0]) == plain

    with serve(create_app(engine(field="text"), opensearch_url)) as server, httpx.Client(base_url=server.url, timeout=30) as proxy:
        through = proxy.post(f"/{sharded_index}/_search", json=text_body("tripod"), headers={"X-QRW-Explain": "true"}).json()
        assert ids(through) == plain and "respelling" not in through["qrw"]
        fixed = proxy.post(f"/{sharded_index}/_search", json=text_body("tripdos"), headers={"X-QRW-Explain": "true"}).json()
        assert fixed["qrw"]["respelling"]["text"] == "tripods"
        metrics = proxy.get("/_qrw/metrics").text
        assert 'qrw_index_respellings_total{outcome="unchanged"} 1.0' in metrics
        assert 'qrw_index_respellings_total{outcome="respelled"} 1.0' in metrics

    from qrw.eval.compare import index_respellings
    found = index_respellings(client, sharded_index, ["tripod", "tripdos"], RespellConfig(field="text"))
    assert list(found) == ["tripdos"] and found["tripdos"].text == "tripods"
