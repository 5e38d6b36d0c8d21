"""Pure parts of the plugin: config validation, gate policy, query merge, rules parsing, guards, cache."""

import copy
import json

import pytest

from qrw.errors import ConfigError
from qrw.plugin import guards
from qrw.plugin.cache import TTLCache
from qrw.plugin.config import GateConfig, GuardConfig, PluginConfig, load_config
from qrw.plugin.errors import RuleSyntaxError, error_body, to_response, UpstreamUnavailable
from qrw.plugin.gate import decide, top_tag
from qrw.plugin.merge import ORIGINAL_NAME, WeightedRewrite, find_text_query, merge_rewrites, strip_ext
from qrw.plugin.rules import parse_rules

# -- config ------------------------------------------------------------------------------------


def test_config_defaults_are_valid_and_frozen():
    config = PluginConfig()
    with pytest.raises(Exception):
        config.gate.full_min = 0.1  # type: ignore[misc]


def test_config_rejects_unknown_keys_and_bad_combinations(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("gate:\n  treshold: 0.4\n")
    with pytest.raises(ConfigError, match="treshold"):
        load_config(path)
    path.write_text("gate:\n  down_weight: 0.9\n  full_weight: 0.5\n")
    with pytest.raises(ConfigError, match="down_weight"):
        load_config(path)
    path.write_text("chain: [1, 2]\n")
    with pytest.raises(ConfigError):
        load_config(path)


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("gate:\n  full_min: 0.7\nproxy:\n  rewrite_indices: [products*]\n")
    config = load_config(path, chain={"deadline_ms": 50})
    assert config.gate.full_min == 0.7 and config.proxy.rewrite_indices == ("products*",)
    assert config.chain.deadline_ms == 50


# -- errors ------------------------------------------------------------------------------------


def test_error_bodies_look_like_opensearch():
    status, body = to_response(UpstreamUnavailable("connection refused"))
    assert status == 502 and body["status"] == 502
    assert body["error"]["type"] == "upstream_unavailable_exception" and body["error"]["reason"] == "connection refused"
    assert to_response(RuntimeError("x"))[0] == 500
    assert error_body(400, "parse_exception", "bad")["error"]["root_cause"][0]["type"] == "parse_exception"


# -- gate --------------------------------------------------------------------------------------

GATE = GateConfig(full_min=0.5, keep_min=0.5, full_weight=1.0, down_weight=0.3)


@pytest.mark.parametrize(
    "probs, action, weight",
    [
        ({"exact": 0.9, "substitute": 0.1}, "full", 1.0),
        ({"exact": 0.5, "weak": 0.5}, "full", 1.0),  # at the threshold: kept
        ({"exact": 0.3, "substitute": 0.3, "weak": 0.4}, "down", 0.3),  # neither wins alone, relevant mass does
        ({"substitute": 0.49, "weak": 0.51}, "drop", 0.0),
        ({"irrelevant": 1.0}, "drop", 0.0),
        ({}, "drop", 0.0),
    ],
)
def test_gate_policy(probs, action, weight):
    decision = decide(probs, GATE)
    assert (decision.action, decision.weight) == (action, weight)
    assert decision.reason


def test_gate_never_threshold_and_tie_break():
    never = GateConfig(full_min=1.01, keep_min=1.01)
    assert decide({"exact": 1.0}, never).action == "drop"
    assert top_tag({"exact": 0.5, "substitute": 0.5}) == ("exact", 0.5)


def test_a_respelling_is_kept_below_keep_min_down_to_its_own_threshold():
    unsure = {"exact": 0.05, "substitute": 0.1, "weak": 0.8, "irrelevant": 0.05}  # 'gaming keyboard' for 'gaming keybord'
    assert decide(unsure, GATE).action == "drop"
    kept = decide(unsure, GATE, respelling=True)
    assert (kept.action, kept.weight) == ("down", 0.3) and "respelling" in kept.reason
    assert decide({"weak": 0.05, "irrelevant": 0.95}, GATE, respelling=True).action == "drop"  # below 0.1 still goes
    assert decide(unsure, GateConfig(keep_min=0.5, respelling_keep_min=1.01), respelling=True).action == "drop"
    assert GateConfig().respelling_keep_min == 0.1

    def never_asked() -> bool:
        raise AssertionError("the respelling test ran for a rewrite the tags already decide")

    assert decide({"exact": 0.9}, GATE, respelling=never_asked).action == "full"
    assert decide({"irrelevant": 1.0}, GATE, respelling=never_asked).action == "drop"  # below every threshold
    assert decide(unsure, GATE, respelling=lambda: True).action == "down"


# -- merge -------------------------------------------------------------------------------------

FIELDS = ["title^3", "name^2", "supplier^2", "short_description", "attributes"]


def rich_body():
    return {
        "query": {"bool": {
            "must": [{"multi_match": {"query": "hp toner", "fields": FIELDS, "operator": "and"}}],
            "filter": [{"range": {"price": {"lte": 100}}}, {"match": {"supplier": "hp toner"}}],
            "must_not": [{"match": {"title": "hp toner"}}],
        }},
        "sort": [{"price": "asc"}], "aggs": {"by_brand": {"terms": {"field": "supplier.raw"}}},
        "from": 10, "size": 5, "highlight": {"fields": {"title": {}}}, "_source": ["title"],
        "track_total_hits": True,
    }


def test_merge_rewrites_only_the_scoring_text_clause():
    body = rich_body()
    before = copy.deepcopy(body)
    merged = merge_rewrites(body, [WeightedRewrite("hewlett packard toner", 1.0), WeightedRewrite("hp cartridge", 0.3)])
    assert body == before  # the input is never mutated
    for key in ("sort", "aggs", "from", "size", "highlight", "_source", "track_total_hits"):
        assert merged[key] == body[key]
    assert merged["query"]["bool"]["filter"] == body["query"]["bool"]["filter"]
    assert merged["query"]["bool"]["must_not"] == body["query"]["bool"]["must_not"]
    wrapper = merged["query"]["bool"]["must"][0]["bool"]
    assert wrapper["minimum_should_match"] == 1
    original, first, second = wrapper["should"]
    assert original == {"multi_match": {"query": "hp toner", "fields": FIELDS, "operator": "and", "_name": ORIGINAL_NAME}}
    assert first["multi_match"] == {"query": "hewlett packard toner", "fields": FIELDS, "operator": "and", "boost": 1.0, "_name": "qrw:rewrite:0"}
    assert second["multi_match"]["boost"] == 0.3 and second["multi_match"]["_name"] == "qrw:rewrite:1"
    json.dumps(merged)  # plain JSON


def test_merge_match_forms_and_callers_boost_and_name():
    short = merge_rewrites({"query": {"match": {"title": "laptop"}}}, [WeightedRewrite("notebook", 1.0)])
    assert short["query"]["bool"]["should"][0] == {"match": {"title": {"query": "laptop", "_name": ORIGINAL_NAME}}}
    assert short["query"]["bool"]["should"][1] == {"match": {"title": {"query": "notebook", "boost": 1.0, "_name": "qrw:rewrite:0"}}}
    long = merge_rewrites({"query": {"match": {"title": {"query": "laptop", "boost": 2, "_name": "mine", "fuzziness": 1}}}},
                          [WeightedRewrite("notebook", 0.5)])
    outer = long["query"]["bool"]
    assert outer["boost"] == 2 and outer["_name"] == "mine"
    assert outer["should"][1]["match"]["title"] == {"fuzziness": 1, "query": "notebook", "boost": 0.5, "_name": "qrw:rewrite:0"}


def test_merge_query_string_rewrites_become_multi_match():
    body = {"query": {"query_string": {"query": "title:(hp AND toner)", "fields": ["title", "name"], "default_operator": "AND"}}}
    merged = merge_rewrites(body, [WeightedRewrite("x OR *:* title:y", 1.0)])
    original, rewrite = merged["query"]["bool"]["should"]
    assert original["query_string"]["query"] == "title:(hp AND toner)"
    assert rewrite == {"multi_match": {"query": "x OR *:* title:y", "fields": ["title", "name"], "operator": "and", "boost": 1.0, "_name": "qrw:rewrite:0"}}
    simple = merge_rewrites({"query": {"simple_query_string": {"query": "a -b"}}}, [WeightedRewrite("c", 1.0)])
    assert simple["query"]["bool"]["should"][1] == {"multi_match": {"query": "c", "boost": 1.0, "_name": "qrw:rewrite:0"}}


def test_merge_all_clauses_with_the_same_text_and_nested_scorers():
    body = {"query": {"function_score": {"query": {"bool": {"should": [
        {"match": {"title": "ssd 1tb"}}, {"match": {"name": "ssd 1tb"}}, {"match": {"name": "other"}}]}}, "boost_mode": "sum"}}}
    found = find_text_query(body)
    assert found.text == "ssd 1tb" and found.path == ("query", "function_score", "query", "bool", "should", 0)
    merged = merge_rewrites(body, [WeightedRewrite("solid state drive 1tb", 1.0)])
    should = merged["query"]["function_score"]["query"]["bool"]["should"]
    assert "bool" in should[0] and "bool" in should[1] and should[2] == {"match": {"name": "other"}}
    assert merged["query"]["function_score"]["boost_mode"] == "sum"


def test_merge_leaves_a_baselines_fuzzy_copy_alone():
    """A clause named qrw:baseline:... (BaselineSpec.fuzzy_boost) scores the query; rewrites join the other one only."""
    fuzzy = {"multi_match": {"query": "keybord", "fields": ["all_text"], "fuzziness": "AUTO", "boost": 0.1,
                             "_name": "qrw:baseline:fuzzy"}}
    body = {"query": {"bool": {"should": [{"multi_match": {"query": "keybord", "fields": ["all_text"]}}, fuzzy]}}}
    merged = merge_rewrites(body, [WeightedRewrite("keyboard", 0.5)])
    first, second = merged["query"]["bool"]["should"]
    assert second == fuzzy and [c["multi_match"]["query"] for c in first["bool"]["should"]] == ["keybord", "keyboard"]
    match_form = {"query": {"match": {"title": {"query": "x", "_name": "qrw:baseline:fuzzy"}}}}
    assert merge_rewrites(match_form, [WeightedRewrite("y", 1.0)]) == match_form


@pytest.mark.parametrize("body", [
    {}, {"size": 0}, {"query": {"match_all": {}}}, {"query": {"match": {"title": ""}}},
    {"query": {"match": {"title": 42}}}, {"query": {"bool": {"filter": [{"match": {"title": "x"}}]}}},
    {"query": {"constant_score": {"filter": {"match": {"title": "x"}}}}},
])
def test_merge_leaves_bodies_without_scoring_text_alone(body):
    assert merge_rewrites(body, [WeightedRewrite("y", 1.0)]) == body


def test_merge_drops_zero_weight_and_strip_ext():
    body = {"query": {"match": {"title": "a"}}, "ext": {"qrw": {"explain": True}, "other": {"k": 1}}}
    stripped, options = strip_ext(body)
    assert options == {"explain": True} and stripped["ext"] == {"other": {"k": 1}} and "qrw" in body["ext"]
    only, _ = strip_ext({"ext": {"qrw": True}, "size": 1})
    assert only == {"size": 1}
    assert merge_rewrites(stripped, [WeightedRewrite("b", 0.0)]) == stripped


# -- rules -------------------------------------------------------------------------------------

RULES = """\
# merchandiser rules
Laptop =>
    PIN: notebook
    PIN: notebook computer ^0.4   # a comment
    BLOCK: laptop bag
/^hp (\\w+)$/ =>
    PIN: hewlett packard \\1
* =>
    BLOCK: /\\bcheap\\b/
"""


def test_rules_parse_and_apply():
    rules = parse_rules(RULES.splitlines(), "r.txt")
    applied = rules.for_query("  LAPTOP ")
    assert applied.pins == (("notebook", 1.0, "r.txt:3"), ("notebook computer", 0.4, "r.txt:4"))
    assert [b.blocks("Laptop  Bag") for b in applied.blocks] == [True, False]
    assert applied.blocks[1].blocks("cheap laptop")
    assert rules.for_query("hp toner").pins == (("hewlett packard toner", 1.0, "r.txt:7"),)
    assert rules.for_query("canon").pins == ()


@pytest.mark.parametrize("text, line, message", [
    ("    PIN: x\n", 1, "before any input"),
    ("q =>\n    PUSH: x\n", 2, "unknown instruction"),
    ("q =>\n    PIN: x ^11\n", 2, "weight"),
    ("/[a/ =>\n    PIN: x\n", 1, "regular expression"),
    ("q =>\nr =>\n    PIN: y\n", 1, "no PIN or BLOCK"),
    ("q\n", 1, "=>"),
    ("/^a$/ =>\n    PIN: x \\2\n", 2, "group"),
])
def test_rules_errors_name_the_line(text, line, message):
    with pytest.raises(RuleSyntaxError) as info:
        parse_rules(text.splitlines(), "r.txt")
    assert f"r.txt:{line}:" in str(info.value) and message in str(info.value)
    assert "PIN: rewrite" in str(info.value)  # the valid syntax is in the message


# -- guards ------------------------------------------------------------------------------------


def test_guard_helpers():
    assert guards.numbers('samsung 16GB ram 27" monitor 3') == {("16", "gb"), ("27", "inch"), ("3", None)}
    assert guards.numbers("xerox 006R90321") == set()  # a model code is not a number
    assert guards.numbers("1,50 m cable") == {("1.5", "m")}
    assert guards.numbers("network media converter 1000mbit") == {("1000", "mbit")}
    assert guards.numbers("100 Mbps switch") == guards.numbers("100mbit switch") == {("100", "mbit")}
    assert guards.lost_number("media converter 1000mbit", "media converter") == "loses 1000mbit"
    assert guards.negations("mouse -wireless without cable") == {"wireless", "cable"}
    assert guards.copy_key("  HP-Toner!! ") == "hp toner"


def test_guards_check():
    strict = GuardConfig(keep_brand=True, keep_numbers=True)
    brands = guards.load_brands(GuardConfig(brands=("HP", "Canon", "Western Digital")))
    query = "hp toner 2 pack without chip"
    rewrites = ["HP toner!", "canon toner 2 pack without chip", "hp cartridge pack without chip",
                "hp cartridge 2 pack without chip", "hp cartridge 2 pack with chip", "HP cartridge 2 pack without chip", " "]
    assert guards.check(query, rewrites, strict, brands) == [
        "loses 2pack", "adds brand 'canon'", "loses 2pack", None,
        "loses negation of 'chip'", "duplicates an earlier rewrite", "empty",
    ]
    # defaults: a rewrite may drop a brand or number (the original clause keeps it), never add one
    default = GuardConfig()
    assert guards.check(query, ["toner", "canon toner", "toner 3 pack", "hp toner 2 pack without chip cartridge"], default, brands) == [
        "loses negation of 'chip'", "adds brand 'canon'", "adds number 3", "names another product after the query ('cartridge')"]
    # a rewrite that appends words after the whole query asks for another product; prepending refines it
    assert guards.check("tv", ["tv remote", "TV", "smart tv", "television"], default, brands) == [
        "names another product after the query ('remote')", "copies the query", None, None]
    assert guards.check("tv", ["tv remote"], GuardConfig(keep_head=False), brands) == [None]
    assert guards.check("printer", ["HP printer 300 dpi"], default, brands) == ["adds brand 'hp'"]
    assert guards.check("printer", ["laser printer 300 dpi"], default, brands) == ["adds number 300"]
    assert guards.check("hp toner", ["HP  Toner"], default, brands) == ["copies the query"]
    assert guards.check("ssd 2tb", ["solid state drive 2 tb"], strict, brands) == [None]  # 2tb = 2 tb
    assert guards.check("ssd 2tb", ["ssd 2gb"], strict, brands) == ["loses 2tb"]
    off = GuardConfig(no_new_brand=False, no_new_number=False, keep_negations=False, keep_head=False, drop_copies=False)
    assert guards.check(query, rewrites[:5], off, brands) == [None] * 5


def test_brands_are_read_from_a_terms_aggregation():
    config = GuardConfig(brands=("HP",), brands_field="supplier.raw", brands_max=3)
    assert guards.brands_aggregation(config) == {"size": 0, "aggs": {"brands": {"terms": {"field": "supplier.raw", "size": 3}}}}
    assert guards.brands_aggregation(GuardConfig()) is None
    response = {"aggregations": {"brands": {"buckets": [{"key": "Canon", "doc_count": 9}, {"key": "Western Digital", "doc_count": 2}]}}}
    assert guards.load_brands(config, guards.brands_from_response(response)) == frozenset({"hp", "canon", "western digital"})
    assert guards.brands_from_response({}) == []


def test_rewrite_operator_keeps_rewrite_clauses_from_flooding():
    body = {"query": {"multi_match": {"query": "usb stick", "fields": ["all_text"], "minimum_should_match": "1"}}}
    merged = merge_rewrites(body, [WeightedRewrite("flash drive", 0.5)], rewrite_operator="and")
    original, rewrite = merged["query"]["bool"]["should"]
    assert original["multi_match"]["minimum_should_match"] == "1" and "operator" not in original["multi_match"]
    assert rewrite["multi_match"]["operator"] == "and" and "minimum_should_match" not in rewrite["multi_match"]
    match = merge_rewrites({"query": {"match": {"all_text": "usb stick"}}}, [WeightedRewrite("flash drive", 0.5)], "and")
    assert match["query"]["bool"]["should"][1]["match"]["all_text"]["operator"] == "and"
    same = merge_rewrites(body, [WeightedRewrite("flash drive", 0.5)], rewrite_operator="same")
    assert same["query"]["bool"]["should"][1]["multi_match"]["minimum_should_match"] == "1"


# -- cache -------------------------------------------------------------------------------------


def test_cache_lru_ttl_and_stale():
    now = [0.0]
    cache = TTLCache(max_entries=2, ttl_s=10, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a").fresh  # a is now most recent
    cache.put("c", 3)  # evicts b
    assert cache.get("b") is None and cache.get("c").value == 3
    now[0] = 11
    hit = cache.get("a")
    assert hit.value == 1 and not hit.fresh  # expired entries stay usable as a fallback
    assert TTLCache(0, 1).get("a") is None



def test_cache_fresh_hit_is_is_fresh_then_get_in_one_step():
    now = [0.0]
    cache = TTLCache(max_entries=2, ttl_s=10, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.fresh_hit("a") == 1 and cache.stats()["hits"] == 1  # counted, and a is now most recent
    cache.put("c", 3)  # evicts b, as after get("a")
    assert cache.peek("b") is None and cache.peek("a") == 1
    assert cache.fresh_hit("missing") is None
    now[0] = 11
    assert cache.fresh_hit("a") is None  # stale: not served, and neither a hit nor a stale hit nor a miss
    assert cache.stats() == {"entries": 2, "hits": 1, "stale_hits": 0, "misses": 0}
    assert cache.get("a").value == 1  # still there as a fallback

def test_rewrite_list_round_trips_through_completion_and_parse():
    from qrw.plugin.prompt import NO_REWRITE, parse_rewrites, query_prefix, rewrite_completion, rewrite_prompt, tag_prompt

    completion = rewrite_completion(["flash drive", "USB flash drive", "flash  drive"])
    assert completion == " flash drive ; USB flash drive ; flash drive"
    assert parse_rewrites(completion) == ["flash drive", "USB flash drive"]  # duplicates (case, spaces) dropped
    assert rewrite_completion([]) == f" {NO_REWRITE}" and parse_rewrites(f" {NO_REWRITE}") == []
    assert parse_rewrites("a;b;c;d;e;f", limit=3) == ["a", "b", "c"]
    assert parse_rewrites("x ; y\nQuery: junk ; z") == ["x", "y"]  # only the first line counts
    assert rewrite_completion(["a ; b"]) == " a b"  # a separator inside one rewrite cannot split it
    # both task prompts start with the same prefix (a runtime may reuse its KV cache)
    assert rewrite_prompt("usb stick").startswith(query_prefix("usb stick"))
    assert tag_prompt("usb stick", "flash drive").startswith(query_prefix("usb stick"))


# -- merge modes: which rewrites may add documents ----------------------------------------------


def _merge_modes_body():
    return {"query": {"multi_match": {"query": "beamer", "fields": ["title^2", "all_text"], "boost": 3, "_name": "mine"}}}


def test_expand_lets_every_rewrite_add_documents():
    merged = merge_rewrites(_merge_modes_body(), [WeightedRewrite("projector", 1.0), WeightedRewrite("video projector", 0.3, expands=False)],
                            "and", "expand")
    wrapper = merged["query"]["bool"]
    assert [next(iter(c.values()))["_name"] for c in wrapper["should"]] == [ORIGINAL_NAME, "qrw:rewrite:0", "qrw:rewrite:1"]
    assert "filter" not in wrapper and wrapper["boost"] == 3 and wrapper["_name"] == "mine"


def test_confident_groups_down_weighted_rewrites_under_the_original():
    body = _merge_modes_body()
    merged = merge_rewrites(body, [WeightedRewrite("projector", 1.0), WeightedRewrite("video projector", 0.3, expands=False)], "and", "confident")
    original, confident, group = merged["query"]["bool"]["should"]
    assert original["multi_match"]["_name"] == ORIGINAL_NAME and confident["multi_match"]["query"] == "projector"
    inner = group["bool"]
    assert inner["minimum_should_match"] == 1 and [c["multi_match"]["query"] for c in inner["should"]] == ["video projector"]
    assert inner["should"][0]["multi_match"]["_name"] == "qrw:rewrite:1" and inner["should"][0]["multi_match"]["boost"] == 0.3
    # the filter is the result set: the user's clause or the expanding rewrite, unnamed and unboosted (the
    # caller's boost and name stay on the wrapper), so the down-weighted rewrite reorders it and adds nothing
    assert inner["filter"] == [{"bool": {"should": [
        {"multi_match": {"query": "beamer", "fields": ["title^2", "all_text"]}},
        {"multi_match": {"query": "projector", "fields": ["title^2", "all_text"], "operator": "and"}}],
        "minimum_should_match": 1}}]
    alone = merge_rewrites(body, [WeightedRewrite("video projector", 0.3, expands=False)], "and", "confident")
    assert alone["query"]["bool"]["should"][1]["bool"]["filter"] == [
        {"multi_match": {"query": "beamer", "fields": ["title^2", "all_text"]}}]  # no expanding rewrite: the user's clause
    assert body == _merge_modes_body()  # input untouched


def test_rerank_lets_no_rewrite_add_documents():
    merged = merge_rewrites({"query": {"match": {"title": "beamer"}}}, [WeightedRewrite("projector", 1.0)], "and", "rerank")
    original, group = merged["query"]["bool"]["should"]
    assert original == {"match": {"title": {"query": "beamer", "_name": ORIGINAL_NAME}}}
    assert group["bool"]["filter"] == [{"match": {"title": {"query": "beamer"}}}]
    assert group["bool"]["should"][0]["match"]["title"]["query"] == "projector"
    with pytest.raises(ValueError, match="merge mode 'widen'"):
        merge_rewrites({"query": {"match": {"title": "beamer"}}}, [WeightedRewrite("projector", 1.0)], "and", "widen")


def test_fidelity_fixes_reach_rewrites_grouped_under_the_original():
    from qrw.plugin.fidelity import faithful_merge

    body = {"query": {"query_string": {"query": "beamer", "fields": ["title", "price"], "lenient": True}}}
    merged = faithful_merge(body, [WeightedRewrite("projector", 0.3, expands=False)], "and", "confident")
    group = merged["query"]["bool"]["should"][1]["bool"]
    assert group["should"][0]["multi_match"]["lenient"] is True  # a numeric field must not turn the rewrite into a 400
    zero = {"query": {"match": {"title": {"query": "the beamer", "zero_terms_query": "all"}}}}
    merged = faithful_merge(zero, [WeightedRewrite("the", 0.3, expands=False)], "and", "rerank")
    group = merged["query"]["bool"]["should"][1]["bool"]
    assert group["should"][0]["match"]["title"]["zero_terms_query"] == "none"
    assert group["filter"][0]["match"]["title"]["zero_terms_query"] == "all"  # the user's own clause, unchanged
    # beside an expanding rewrite the filter also holds a copy of it: corrected like the rewrite it copies
    both = [WeightedRewrite("projector", 1.0, expands=True), WeightedRewrite("video projector", 0.3, expands=False)]
    merged = faithful_merge(body, both, "and", "confident")
    user_clause, copy = merged["query"]["bool"]["should"][2]["bool"]["filter"][0]["bool"]["should"]
    assert user_clause == {"query_string": {"query": "beamer", "fields": ["title", "price"], "lenient": True}}
    assert copy["multi_match"]["query"] == "projector" and copy["multi_match"]["lenient"] is True
    merged = faithful_merge(zero, [WeightedRewrite("beamer", 1.0, expands=True), WeightedRewrite("the", 0.3, expands=False)],
                            "and", "confident")
    user_clause, copy = merged["query"]["bool"]["should"][2]["bool"]["filter"][0]["bool"]["should"]
    assert user_clause["match"]["title"]["zero_terms_query"] == "all" and copy["match"]["title"]["zero_terms_query"] == "none"


def test_merge_mode_default_and_validation():
    assert PluginConfig().merge.mode == "confident"
    with pytest.raises(ConfigError, match="merge.mode"):
        load_config(None, merge={"mode": "widen"})
