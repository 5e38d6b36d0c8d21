"""Training data by measured gain: pure parts on hand-made inputs, the build against the real catalog and node."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from qrw.eval.folds import fold_of, split_queries
from qrw.plugin.prompt import TAGS, parse_rewrites, rewrite_prompt
from qrw.search.catalog import Product
from qrw.trainer.bridge import mine_bridge
from qrw.trainer.candidates import SpellingIndex, admissible
from qrw.trainer.data import read_jsonl
from qrw.trainer.facets import CatalogFacets, grade_for_intent
from qrw.trainer.intent import LabelRule, Outcome

PRODUCTS = [
    Product(id="1", title="TP-LINK TL-WN821N networking card WLAN 300 Mbit/s", supplier="TP-LINK",
            attributes={"product_colour": "Black"}),
    Product(id="2", title="TP-LINK TL-WN722N networking card WLAN 150 Mbit/s", supplier="TP-LINK"),
    Product(id="3", title="Netgear A6100 networking card WLAN 433 Mbit/s", supplier="Netgear"),
    Product(id="4", title="Tripp Lite 1.44kw PDU, 120V Outlets", supplier="Tripp Lite"),
    Product(id="5", title="HP TouchSmart tm2 Networking Card Kit", supplier="HP"),
    Product(id="6", title="Tripp Lite lite black thing", supplier="Tripp Lite", attributes={"product_colour": "Black"}),
]


def test_folds_are_deterministic_and_case_insensitive():
    assert fold_of("Laptop", 5) == fold_of(" laptop ", 5)
    train, valid = split_queries([f"query {i}" for i in range(200)], 5, 0)
    assert set(train).isdisjoint(valid) and len(train) + len(valid) == 200 and 20 < len(valid) < 60


def test_facets_read_types_skip_brand_words_and_normalise_values():
    facets = CatalogFacets(PRODUCTS, min_type_count=2)
    assert facets["1"].product_type == "networking card" and facets["1"].brand == "TP-LINK"
    assert {"300mbit", "black"} <= facets["1"].values
    assert facets["5"].product_type == "networking card"  # capitalised title: the known type it contains
    assert facets["4"].product_type == ""  # "Lite" belongs to the brand, never a type
    assert facets.brands_in("cheap tp-link card") == {"TP-LINK"}
    assert facets.values_in("black 300mbit card") == {"black", "300mbit"}
    assert grade_for_intent(facets["1"], "networking card", None, ()) == 3
    assert grade_for_intent(facets["1"], "networking card", "Netgear", ()) == 1
    assert grade_for_intent(facets["2"], "networking card", None, ("black",)) == 1
    assert grade_for_intent(facets["4"], "networking card", None, ()) == 0 and grade_for_intent(None, "x", None, ()) == 0


def test_bridge_is_mined_from_catalog_text():
    texts = (["Logitech headset USB", "head of the set", "wireless head", "set of cables"] * 25
             + ["APC uninterruptible power supply (UPS) 700VA"] * 3 + ["Wi-Fi router"] * 3 + ["fibre optic cable"] * 3)
    bridge = mine_bridge(texts, min_part_count=20, min_count=3)
    assert "head set" in bridge.user_forms("headset") and "headset" in bridge.catalog_forms("head set")
    assert "ups" in bridge.user_forms("uninterruptible power supply") and bridge.catalog_forms("ups") == ["uninterruptible power supply"]
    assert {"wifi", "wi fi"} <= set(bridge.user_forms("wi-fi"))
    assert bridge.catalog_forms("fiber optic cable") == ["fibre optic cable"]
    assert set(bridge.counts()) == {"compound", "abbreviation", "hyphen", "spelling"}


def test_spelling_and_admissible_candidates():
    speller = SpellingIndex(["printer drum"] * 10 + ["battery pack"] * 10)
    assert speller.correct("pritner") == "printer" and speller.correct("printer") is None and speller.correct("xyzzy") is None
    facets = CatalogFacets(PRODUCTS, min_type_count=2)
    assert admissible("wlan card", "networking card", facets)
    assert not admissible("wlan card", "tp-link networking card", facets)  # adds a brand
    assert not admissible("wlan card", "networking card 300 mbit/s", facets)  # adds a number
    assert not admissible("wlan card", "black networking card", facets)  # adds a value
    assert not admissible("wlan card", "WLAN  card", facets)  # a copy
    assert admissible("black tp-link card 300mbit", "black tp-link networking card 300mbit", facets)


def test_label_rule_maps_measured_outcomes_to_tags():
    rule = LabelRule(helps=0.03, hurts=-0.01, on_intent=0.3)
    assert rule.tag(Outcome("r", 0.2, 0.8, 0)).name == "exact"
    assert rule.tag(Outcome("r", 0.0, 0.8, 0)).name == "substitute"
    assert rule.tag(Outcome("r", 0.2, 0.1, 0)).name == "weak"  # a lucky gain off intent is not trusted
    assert rule.tag(Outcome("r", -0.05, 1.0, 0)).name == "irrelevant"
    assert "exact" in rule.describe()


@pytest.mark.opensearch
def test_in_process_baseline_follows_the_node(opensearch_url, indexed_catalog, catalog, judgments_path):
    from qrw.eval.judgments import load_judgments
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.connect import open_client
    from qrw.trainer.lexical import B, K1, LexicalIndex, agreement_with_opensearch, analyze, analyze_joined, joined_groups, lucene_length

    # the index states its BM25 parameters, and the mirror reads the same ones
    settings = open_client(opensearch_url).indices.get_settings(index=indexed_catalog)
    similarity = next(iter(settings.values()))["settings"]["index"]["similarity"]["default"]
    assert similarity["type"] == "BM25" and (float(similarity["k1"]), float(similarity["b"])) == (K1, B)
    assert analyze("Laptops Café's Notebooks") == ["laptop", "cafe", "notebook"]
    assert analyze_joined("Smart Watches") == ["smart", "watch", "smartwatch"]
    # grouped by position as the node's match query reads the shingles (one Synonym term per group)
    assert joined_groups("micro sd card") == [["micro", "microsd"], ["sd", "sdcard"], ["card"]]
    assert [lucene_length(n) for n in (23, 40, 100)] == [23, 40, 96]  # Lucene's one-byte norms
    index = LexicalIndex.from_products(catalog, DEFAULT_BASELINE)
    queries = list(load_judgments(judgments_path))
    report = agreement_with_opensearch(index, open_client(opensearch_url), indexed_catalog, queries)
    assert report["mean_top10_overlap"] > 0.9 and report["top1_agreement"] > 0.9
    # rewrite clauses go out with operator and: the joined field then needs one term of each group
    from qrw.search.runner import search_many

    all_terms = DEFAULT_BASELINE.model_copy(update={"operator": "and"})
    node = search_many(open_client(opensearch_url), indexed_catalog, {q: all_terms.build(q) for q in queries}, depth=10)
    same = [index.total(index.clause_scores(q, operator="and")) == node[q].total for q in queries]
    assert sum(same) >= 0.95 * len(queries)


@pytest.mark.opensearch
def test_in_process_baseline_refuses_what_it_cannot_mirror(catalog):
    """A fuzzy baseline would silently be measured as an exact one: refused instead."""
    import pytest

    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.trainer.lexical import LexicalIndex

    with pytest.raises(ValueError, match="fuzziness"):
        LexicalIndex.from_products(catalog[:50], DEFAULT_BASELINE.model_copy(update={"fuzziness": "AUTO"}))
    with pytest.raises(ValueError, match="fuzzy copy"):
        LexicalIndex.from_products(catalog[:50], DEFAULT_BASELINE.model_copy(update={"fuzzy_boost": 0.1}))
    assert len(LexicalIndex.from_products(catalog[:50], DEFAULT_BASELINE).ids) == 50


def test_build_data_labels_by_measured_gain_without_leaks(built_data):
    config, card = built_data
    out = Path(config.output_dir)
    for name in ("rewrite_train.jsonl", "rewrite_valid.jsonl", "tag_train.jsonl", "tag_valid.jsonl", "grpo_train.jsonl",
                 "calibration_pseudo.jsonl", "split.json", "data_card.json", "data_card.md"):
        assert (out / name).is_file(), name
    split = json.loads((out / "split.json").read_text())
    valid = {q.casefold().replace(" ", "") for q in split["valid_queries"]}
    assert len(split["valid_queries"]) + len(split["train_queries"]) == 93 and valid
    for name in ("rewrite_train.jsonl", "tag_train.jsonl", "grpo_train.jsonl"):
        rows = read_jsonl(out / name)
        assert rows and not {r["query"].casefold().replace(" ", "") for r in rows} & valid, f"validation query leaked into {name}"
    rewrites = read_jsonl(out / "rewrite_train.jsonl")
    assert {r["source"] for r in rewrites} == {"judged", "pseudo"}
    assert all(r["prompt"] == rewrite_prompt(r["query"]) and parse_rewrites(r["completion"]) == r["rewrites"] for r in rewrites)
    assert any(r["rewrites"] for r in rewrites) and any(not r["rewrites"] for r in rewrites)
    tags = read_jsonl(out / "tag_train.jsonl")
    assert {r["tag"] for r in tags} == {t.name for t in TAGS}
    rule = config.rule
    assert all(rule.tag(Outcome(r["rewrite"], r["gain"], r["own"], 0)).name == r["tag"] for r in tags)
    # targets only list rewrites that helped, measured; and no target adds a brand, number or value
    by_pair = {(r["query"], r["rewrite"]): r for r in read_jsonl(out / "tag_valid.jsonl") + tags}
    for r in rewrites:
        for target in r["rewrites"]:
            assert by_pair[(r["query"], target)]["tag"] == "exact"
    assert card["leakage_check"]["train_queries_equal_to_a_validation_query"] == 0
    agreement = card["agreement_with_opensearch"]
    assert agreement["pairs"] > 20 and agreement["spearman_gain"] > 0.8
    assert "20 random examples" in (out / "data_card.md").read_text()


@pytest.mark.opensearch
def test_judged_bridges_help_and_accessories_hurt(catalog, judgments_path):
    """On the real catalog and judgments: a catalog-vocabulary type helps, an accessory type hurts."""
    from qrw.eval.judgments import load_judgments
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.trainer.facets import CatalogFacets
    from qrw.trainer.intent import judged_intent, measure
    from qrw.trainer.lexical import LexicalIndex

    qrels = load_judgments(judgments_path)
    facets = CatalogFacets(catalog)
    index = LexicalIndex.from_products(catalog, DEFAULT_BASELINE)
    _, outcomes = measure(index, facets, judged_intent("sd card", qrels["sd card"], facets), ["memory card", "card reader"])
    helped, hurt = outcomes
    assert helped.gain > 0.05 and hurt.gain < -0.05


@pytest.mark.opensearch
def test_build_data_is_deterministic(built_data, tmp_path, training_catalog):
    import dataclasses

    from qrw.trainer.data import build_data

    config, _ = built_data
    again = dataclasses.replace(config, output_dir=str(tmp_path), agreement_sample=0)
    build_data(again, catalog=training_catalog, progress=False)
    for name in ("rewrite_train.jsonl", "tag_train.jsonl", "tag_valid.jsonl", "grpo_train.jsonl"):
        assert (tmp_path / name).read_text() == (Path(config.output_dir) / name).read_text(), name


def test_pseudo_queries_are_seeded_and_name_a_kind(catalog):
    from qrw.trainer.bridge import catalog_texts
    from qrw.trainer.pseudo import sample_pseudo_queries

    facets = CatalogFacets(catalog[:3000])
    bridge = mine_bridge(catalog_texts(catalog[:3000]))
    first = sample_pseudo_queries(facets, bridge, 200, random.Random(5), exclude=["toner cartridge"])
    again = sample_pseudo_queries(facets, bridge, 200, random.Random(5), exclude=["toner cartridge"])
    assert first == again and len(first) == 200
    assert all(p.ptype in facets.type_counts and p.query == p.query.casefold() for p in first)
    assert "toner cartridge" not in {p.query for p in first}
    assert all(p.brand.casefold() in p.query for p in first if p.brand and "misspelling" not in p.transforms)
