"""The index profile: the shipped Icecat profile, validation, roles, drafting from documents and live indexes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qrw.errors import ConfigError
from qrw.search.baseline import DEFAULT_BASELINE, BaselineSpec
from qrw.search.profile import IndexProfile, default_form, load_profile

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop"

# The mapping the Icecat index had while it was hard-coded in qrw/search/index.py: the shipped
# profile must reproduce it, so existing indexes keep their fingerprint and are not rebuilt.
LEGACY_ICECAT_PROPERTIES = {"id", "title", "name", "supplier", "short_description", "attributes", "all_text", "price",
                            "ean", "date_released", "image_url"}


def qrw(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qrw.cli", *args], capture_output=True, text=True, timeout=300, env=env)


def shop_documents() -> list[dict]:
    return [json.loads(line) for line in (SHOP / "catalog.jsonl").read_text().splitlines()]


def test_shipped_icecat_profile_is_the_default_baseline():
    profile = load_profile()
    assert profile.baseline == DEFAULT_BASELINE  # every field, name and description included
    assert profile.baseline.build("hp toner") == DEFAULT_BASELINE.build("hp toner")
    assert profile.index == "products" and profile.id_field == "id" and profile.brand_field == "supplier"


def test_icecat_profile_builds_the_legacy_mapping():
    mapping = load_profile().mapping()
    properties = mapping["mappings"]["properties"]
    assert set(properties) == LEGACY_ICECAT_PROPERTIES
    assert mapping["mappings"]["dynamic"] == "strict"
    assert properties["id"] == {"type": "keyword"}
    assert properties["title"]["copy_to"] == ["all_text"] and properties["title"]["fields"]["stem"]["analyzer"] == "qrw_stemmed"
    assert "raw" in properties["supplier"]["fields"] and "raw" in properties["name"]["fields"]
    assert "raw" not in properties["title"]["fields"]
    assert properties["image_url"] == {"type": "keyword", "index": False}
    assert mapping["settings"]["number_of_shards"] == 1 and "qrw_stemmed" in mapping["settings"]["analysis"]["analyzer"]
    assert mapping["settings"]["similarity"]["default"]["type"] == "BM25"


def _profile(**changes) -> dict:
    data = {"name": "t", "title_field": "title", "text_fields": ["title", "body"], "brand_field": "brand",
            "baseline": {"name": "b", "fields": ["all_text", "brand.stem^0.5"], "type": "most_fields"}}
    data.update(changes)
    return data


@pytest.mark.parametrize("changes, message", [
    ({"baseline": {"name": "b", "fields": ["titel^2"]}}, "titel^2 name no text field"),
    ({"exact_fields": ["price"]}, "exact_fields price are not text fields"),
    ({"text_fields": ["title", "all_text"]}, "catch-all"),
    ({"other_fields": {"body": {"type": "keyword"}}}, "both a text field and in other_fields"),
    ({"text_fields": []}, "at least one"),
    ({"dynamic": "sometimes"}, "dynamic"),
    ({"colour_field": "colour"}, "colour_field"),
])
def test_invalid_profiles_fail_naming_the_file_and_the_key(tmp_path, changes, message):
    path = tmp_path / "p.yaml"
    path.write_text(json.dumps(_profile(**changes)))
    with pytest.raises(ConfigError, match="invalid profile") as info:
        load_profile(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_missing_and_malformed_profile_files(tmp_path):
    with pytest.raises(ConfigError, match="profile file not found"):
        load_profile(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_profile(bad)


def test_yaml_boolean_dynamic_and_round_trip(tmp_path):
    from qrw.search.profile import write_profile

    profile = IndexProfile.model_validate({**_profile(), "dynamic": False})
    assert profile.dynamic == "false" and profile.mapping()["mappings"]["dynamic"] is False
    again = load_profile(write_profile(profile, tmp_path / "p.yaml", header=["a comment"]))
    assert again == profile and (tmp_path / "p.yaml").read_text().startswith("# a comment\n")


def test_roles_read_from_a_document():
    profile = IndexProfile.model_validate(_profile(category_fields=["dept"], attribute_fields=["colour"], id_field="sku"))
    item = profile.item({"sku": 7, "title": "Oak table", "brand": "Nordvik", "dept": "dining", "colour": ["red", "blue"],
                         "body": "Solid."})
    assert (item.id, item.title, item.brand, item.categories) == ("7", "Oak table", "Nordvik", ("dining",))
    assert item.attributes == {"colour": "red ; blue"}
    assert item.text == "Oak table ; Solid. ; Nordvik ; dining ; red ; blue"
    assert profile.field_weights == {"all_text": 1.0, "brand": 0.5}
    assert IndexProfile.model_validate(_profile(id_field="_id")).item({"title": "x"}, "doc-9").id == "doc-9"


def test_a_foreign_baseline_is_rebased_for_the_index_qrw_builds():
    foreign = IndexProfile.model_validate(_profile(baseline={"name": "f", "fields": ["title.english", "body"],
                                                             "type": "cross_fields"}))
    assert foreign.missing_in_built_index() == ["title.english"]
    built, rebased = foreign.for_built_index("shop")
    assert rebased and built.index == "shop" and built.baseline == default_form("brand")
    fitting = IndexProfile.model_validate(_profile(baseline={"name": "s", "fields": ["title.stem^2", "brand.raw"]}))
    assert fitting.for_built_index("x") == (fitting.model_copy(update={"index": "x"}), False)


def test_infer_from_documents_finds_the_roles_of_a_catalog_with_its_own_field_names():
    from qrw.search.infer import infer_from_documents

    profile = infer_from_documents(shop_documents(), index="shop")
    assert profile.id_field == "sku" and profile.title_field == "product_name" and profile.brand_field == "maker"
    assert set(profile.category_fields) == {"department", "kind"}
    assert set(profile.attribute_fields) == {"colour", "material"}
    assert "blurb" in profile.text_fields and profile.text_fields[0] == "product_name"
    assert profile.other_fields == {"price_eur": {"type": "float"}, "in_stock": {"type": "boolean"}}
    assert profile.baseline.fields == ("all_text", "maker.stem^1", "all_text.join^1") and not profile.missing_in_built_index()


def test_infer_from_documents_needs_an_id():
    from qrw.errors import InputDataError
    from qrw.search.infer import infer_from_documents

    with pytest.raises(InputDataError, match="distinct id"):
        infer_from_documents([{"title": "a b", "x": "same"}, {"title": "c d", "x": "same"}], index="x")


@pytest.mark.opensearch
def test_infer_on_the_icecat_index_reproduces_the_default_query(opensearch_url, indexed_catalog, tmp_path):
    out = tmp_path / "icecat.yaml"
    result = qrw("profile", "infer", "--index", indexed_catalog, "--url", opensearch_url, "--out", str(out))
    assert result.returncode == 0, result.stderr
    profile = load_profile(out)
    assert (profile.id_field, profile.title_field, profile.brand_field) == ("id", "title", "supplier")
    assert profile.baseline.build("hp toner") == DEFAULT_BASELINE.build("hp toner")
    assert profile.other_fields["price"] == {"type": "float"}


@pytest.mark.opensearch
def test_index_from_jsonl_errors_name_the_line_or_document(tmp_path, opensearch_url, capsys):
    from qrw.cli import main

    def qrw_in_process(*args: str) -> subprocess.CompletedProcess:
        code = main(list(args))  # the console script's own entry point, without a new interpreter
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    profile = tmp_path / "p.yaml"
    profile.write_text(json.dumps(_profile(id_field="sku")))
    cases = [
        ('{"sku": "1", "title": "a"}\nnot json\n', "p.jsonl:2: not valid JSON"),
        ('{"sku": "1", "title": "a"}\n{"sku": "1", "title": "b"}\n', "repeats the id '1'"),
        ('{"title": "a"}\n', "no usable 'sku'"),
        ('{"sku": "1", "title": "a", "body": {"x": 1}}\n', "text field 'body' holds an object"),
        ('[1, 2]\n', "expected a JSON object"),
    ]
    for content, message in cases:
        catalog = tmp_path / "p.jsonl"
        catalog.write_text(content)
        result = qrw_in_process("index", "--url", opensearch_url, "--from", str(catalog), "--profile", str(profile),
                                "--index", "bad-catalog")
        assert result.returncode == 2 and message in result.stderr, (content, result.stderr)
        assert "Traceback" not in result.stderr
    result = qrw_in_process("index", "--url", opensearch_url, "--profile", str(profile))
    assert result.returncode == 2 and "fields the Icecat documents do not have" in result.stderr


def test_profile_show_prints_the_query_and_mapping():
    result = qrw("profile", "show", "--mapping")
    assert result.returncode == 0, result.stderr
    assert "name: icecat" in result.stdout and '"all_text"' in result.stdout and "qrw_stemmed" in result.stdout


def test_baseline_spec_is_the_profile_type_s_query_builder():
    # the profile holds a BaselineSpec, not a copy of its logic
    assert IndexProfile.model_fields["baseline"].annotation is BaselineSpec
