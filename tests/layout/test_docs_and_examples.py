"""The configuration reference and the examples are generated or checked from the code, so they cannot go stale."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from qrw import config_reference

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


def test_configuration_reference_and_plugin_example_match_the_models(monkeypatch):
    monkeypatch.setenv("QRW_OPENSEARCH_URL", "http://elsewhere:9200")  # the reference must not depend on the environment
    assert config_reference.REFERENCE.read_text(encoding="utf-8") == config_reference.reference(), \
        "docs/configuration.md is stale: run .venv/bin/python -m qrw.config_reference"
    assert config_reference.PLUGIN_EXAMPLE.read_text(encoding="utf-8") == config_reference.plugin_example(), \
        "examples/plugin.yaml is stale: run .venv/bin/python -m qrw.config_reference"


def test_every_plugin_key_is_documented_with_its_default():
    from qrw.plugin.config import PluginConfig

    text = config_reference.REFERENCE.read_text(encoding="utf-8")
    for section, field in PluginConfig.model_fields.items():
        for key, sub in field.annotation.model_fields.items():
            assert f"| `{section}.{key}` |" in text
            assert sub.description, f"{section}.{key} has no description to document"


def test_plugin_example_is_a_valid_config_at_the_defaults():
    from qrw.plugin.config import PluginConfig, load_config

    assert load_config(EXAMPLES / "plugin.yaml") == PluginConfig()


def test_rules_example_loads_and_applies():
    from qrw.plugin.rules import load_rules

    rules = load_rules(EXAMPLES / "rules.txt")
    applied = rules.for_query("Laptop")
    assert [(text, weight) for text, weight, _ in applied.pins] == [("notebook", 1.0), ("notebook computer", 0.4)]
    assert any(block.blocks("laptop bag") for block in applied.blocks)
    assert [text for text, _, _ in rules.for_query("hp envy").pins] == ["hewlett packard envy"]
    assert any(block.blocks("cheap toner") for block in rules.for_query("toner").blocks)


def _generator():
    spec = importlib.util.spec_from_file_location("shop_catalog", EXAMPLES / "shop" / "make_catalog.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shop_example_files_are_the_generator_output(tmp_path):
    catalog, judgments = _generator().write(tmp_path)
    assert catalog.read_bytes() == (EXAMPLES / "shop" / "catalog.jsonl").read_bytes()
    assert judgments.read_bytes() == (EXAMPLES / "shop" / "judgments.csv").read_bytes()


def test_shop_profile_example_is_what_infer_drafts():
    from qrw.search.infer import infer_from_documents
    from qrw.search.profile import load_profile

    documents = [json.loads(line) for line in (EXAMPLES / "shop" / "catalog.jsonl").read_text().splitlines()]
    assert load_profile(EXAMPLES / "shop" / "profile.yaml") == infer_from_documents(documents, index="shop", name="shop")


def test_shop_judgments_grade_by_facets():
    shop = _generator()
    sofa = {"kind": "sofa", "department": "living room", "colour": "green", "material": "velvet", "maker": "Lumio"}
    assert shop.grade(sofa, {"kind": "sofa", "colour": "green", "material": "velvet"}) == 3
    assert shop.grade(sofa, {"kind": "sofa", "colour": "red", "material": "velvet"}) == 2
    assert shop.grade(sofa, {"kind": "sofa", "colour": "red", "material": "linen"}) == 1
    assert shop.grade(sofa, {"kind": "armchair"}) == 1 and shop.grade(sofa, {"kind": "parasol"}) == 0
