"""Training data builders: pure parts on tiny inputs, the full build against the real index."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from qrw.plugin.prompt import TAGS, rewrite_prompt
from qrw.search.catalog import Product
from qrw.trainer.data import drift_variants, fold_of, pseudo_query, read_jsonl, split_queries
from qrw.trainer.facets import facets_of, hit_grade


def test_folds_are_deterministic_and_case_insensitive():
    assert fold_of("Laptop", 5) == fold_of(" laptop ", 5)
    queries = [f"query {i}" for i in range(200)]
    train, valid = split_queries(queries, 5, 0)
    assert set(train).isdisjoint(valid) and len(train) + len(valid) == 200
    assert 20 < len(valid) < 60


def test_facets_read_the_title_shape():
    product = Product(id="1", title="TP-LINK TL-WN821N networking card WLAN 300 Mbit/s", supplier="TP-LINK")
    facets = facets_of(product)
    assert facets.product_type == "networking card" and facets.key == "300 Mbit/s"
    neighbour = facets_of(Product(id="2", title="TP-LINK TL-WN722N networking card WLAN 150 Mbit/s", supplier="TP-LINK"))
    assert hit_grade(facets, facets) == 3 and hit_grade(facets, neighbour) == 2 and hit_grade(facets, None) == 0


def test_pseudo_queries_are_seeded_and_differ_from_the_rewrite():
    facets = facets_of(Product(id="9", title="Lenovo ThinkPad X1 notebook 35.6 cm (14\") 16 GB", supplier="Lenovo"))
    first = [pseudo_query(facets, random.Random(3)) for _ in range(1)]
    again = [pseudo_query(facets, random.Random(3)) for _ in range(1)]
    assert first == again
    rng = random.Random(0)
    for _ in range(30):
        pair = pseudo_query(facets, rng)
        if pair:
            query, rewrite = pair
            assert rewrite == "Lenovo notebook 35.6 cm" and query.casefold() != rewrite.casefold()


def test_drift_variants_change_brand_type_and_numbers():
    pools = {"brand": ["Canon", "HP"], "type": ["ink cartridge", "toner cartridge", "mouse"]}
    variants = dict(drift_variants("HP toner cartridge 12 ml", {"brand": "HP", "type": "toner cartridge", "key": "12 ml"},
                                   pools, random.Random(1)))
    assert variants["brand"] == "Canon toner cartridge 12 ml"
    assert "toner cartridge" not in variants["type"]
    assert variants["number_changed"] in ("HP toner cartridge 24 ml", "HP toner cartridge 6 ml")
    assert variants["number_dropped"] == "HP toner cartridge"


@pytest.mark.opensearch
def test_build_data_writes_folds_card_and_balanced_tags(built_data):
    config, card = built_data
    out = Path(config.output_dir)
    for name in ("rewrite_train.jsonl", "rewrite_valid.jsonl", "tag_train.jsonl", "tag_valid.jsonl", "grpo_train.jsonl",
                 "split.json", "data_card.json", "data_card.md"):
        assert (out / name).is_file(), name
    split = json.loads((out / "split.json").read_text())
    valid = {q.casefold() for q in split["valid_queries"]}
    assert len(split["valid_queries"]) + len(split["train_queries"]) == 93 and valid
    for name in ("rewrite_train.jsonl", "tag_train.jsonl", "grpo_train.jsonl"):
        rows = read_jsonl(out / name)
        assert rows, name
        assert not {r["query"].casefold() for r in rows} & valid, f"validation query leaked into {name}"
    rewrites = read_jsonl(out / "rewrite_train.jsonl")
    assert {r["source"] for r in rewrites} == {"judged", "pseudo"}
    assert all(r["prompt"] == rewrite_prompt(r["query"]) and r["completion"].startswith(" ") for r in rewrites)
    tags = read_jsonl(out / "tag_train.jsonl")
    assert {r["tag"] for r in tags} == {t.name for t in TAGS}
    assert any("drift" in r["source"] for r in tags)
    assert all(r["completion"] in {t.token for t in TAGS} for r in tags)
    assert card["files"]["tag_train.jsonl"] == len(tags)
    assert set(card["tag_balance"]["tag_train.jsonl"]) == {t.name for t in TAGS}
    assert "Tag balance" in (out / "data_card.md").read_text()


@pytest.mark.opensearch
def test_build_data_is_deterministic(built_data, tmp_path, catalog):
    import dataclasses

    from qrw.trainer.data import build_data

    config, _ = built_data
    again = dataclasses.replace(config, output_dir=str(tmp_path))
    build_data(again, catalog=catalog, progress=False)
    for name in ("rewrite_train.jsonl", "tag_train.jsonl", "tag_valid.jsonl", "grpo_train.jsonl"):
        assert (tmp_path / name).read_text() == (Path(config.output_dir) / name).read_text(), name
