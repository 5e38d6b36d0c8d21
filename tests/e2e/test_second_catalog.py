"""End to end on a second catalog: a home-and-garden shop with field names of its own, not electronics.

The chain a new user follows, every step through the real CLI against the session's OpenSearch:

1. someone else's index (their own mapping: keyword brands, an ``english`` sub-field, no catch-all);
2. ``qrw profile infer`` drafts a profile from it, and its baseline works there without edits;
3. ``qrw index --from FILE.jsonl --profile`` builds qrw's own index of the same catalog and writes
   the profile of that index;
4. ``qrw train data --profile --catalog`` builds measured-gain training data from this catalog and
   its judgments, and ``qrw train sft`` fine-tunes the session's tiny model on it for a few steps;
5. the trained model is exported on first use through the one model path (``qrw model path CKPT``);
6. ``qrw proxy --profile`` serves it, with the catalog's brands from the profile's brand field;
7. ``qrw eval --profile`` scores the baseline direct and what the proxy serves (``--url`` = proxy).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from qrw.search import node as os_node

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.opensearch


def load_generator():
    spec = importlib.util.spec_from_file_location("shop_catalog", REPO / "examples" / "shop" / "make_catalog.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def qrw(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qrw.cli", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


FOREIGN_MAPPING = {"properties": {
    "sku": {"type": "keyword"},
    "product_name": {"type": "text", "fields": {"en": {"type": "text", "analyzer": "english"}, "kw": {"type": "keyword"}}},
    "maker": {"type": "keyword"},
    "department": {"type": "keyword"},
    "kind": {"type": "text", "fields": {"kw": {"type": "keyword"}}},
    "colour": {"type": "keyword"},
    "material": {"type": "keyword"},
    "blurb": {"type": "text", "analyzer": "english"},
    "price_eur": {"type": "float"},
    "in_stock": {"type": "boolean"},
}}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A fresh synthetic catalog (another seed and size than examples/shop) and its judgments."""
    folder = tmp_path_factory.mktemp("garden")
    catalog, judgments = load_generator().write(folder, n=300, seed=23)
    return catalog, judgments


def test_second_catalog_from_someone_elses_index_to_the_served_rewriter(
        shop, opensearch_url, tiny_checkpoint, stored_tiny_export, model_cache, tmp_path):
    from opensearchpy import OpenSearch, helpers

    catalog, judgments = shop
    documents = [json.loads(line) for line in catalog.read_text().splitlines()]
    env = {**os.environ, "QRW_CACHE_DIR": str(model_cache), "QRW_OPENSEARCH_URL": opensearch_url}

    # 1. someone else's index, with a mapping of their own
    client = OpenSearch(hosts=[opensearch_url])
    if client.indices.exists(index="garden-foreign"):
        client.indices.delete(index="garden-foreign")
    client.indices.create(index="garden-foreign", body={"mappings": FOREIGN_MAPPING})
    helpers.bulk(client, ({"_index": "garden-foreign", "_id": d["sku"], "_source": d} for d in documents), refresh=True)

    # 2. a profile drafted from it; its baseline works there as it is (URL from QRW_OPENSEARCH_URL)
    drafted = tmp_path / "garden.yaml"
    result = qrw("profile", "infer", "--index", "garden-foreign", "--out", str(drafted), env=env)
    assert result.returncode == 0, result.stderr
    profile = yaml.safe_load(drafted.read_text())
    assert (profile["id_field"], profile["title_field"], profile["brand_field"]) == ("sku", "product_name", "maker")
    assert set(profile["category_fields"]) == {"department", "kind"}
    assert set(profile["attribute_fields"]) == {"colour", "material"}
    assert "product_name.en" in profile["baseline"]["fields"] and "all_text" not in profile["baseline"]["fields"]
    foreign_report = tmp_path / "foreign.json"
    result = qrw("eval", "--profile", str(drafted), "--judgments", str(judgments), "--out", str(foreign_report),
                 "--quiet", env=env)
    assert result.returncode == 0, result.stderr
    foreign = json.loads(foreign_report.read_text())
    assert foreign["index"] == "garden-foreign" and foreign["queries"] == len(load_generator().QUERIES)
    assert foreign["ndcg@10"] > 0.6, foreign["ndcg@10"]  # a working baseline, no hand edits

    # 3. qrw's own index of the same catalog, and the profile of that index
    built_profile = tmp_path / "garden-built.yaml"
    result = qrw("index", "--from", str(catalog), "--profile", str(drafted), "--index", "garden",
                 "--profile-out", str(built_profile), env=env)
    assert result.returncode == 0, result.stderr
    assert "built: alias garden ->" in result.stdout and "(300 documents)" in result.stdout
    assert "product_name.en" in result.stdout  # said why the baseline changed
    built = yaml.safe_load(built_profile.read_text())
    assert built["index"] == "garden" and built["baseline"]["fields"] == ["all_text", "maker.stem^1", "all_text.join^1"]

    # 4. training data from this catalog through its profile, and a tiny SFT on it
    data = tmp_path / "data"
    result = qrw("train", "data", "--profile", str(built_profile), "--catalog", str(catalog), "--judgments", str(judgments),
                 "--output-dir", str(data), "--pseudo-queries", "300", "--agreement-sample", "60", "--url", opensearch_url,
                 "--index", "garden", env=env)
    assert result.returncode == 0, result.stderr
    card = json.loads((data / "data_card.json").read_text())
    assert "profile 'garden-foreign'" in card["sources"]["catalog"] and card["queries"]["pseudo/train"] > 100
    assert card["agreement_with_opensearch"]["spearman_gain"] > 0.5  # the in-process baseline follows the node here too
    tags = [json.loads(line) for line in (data / "tag_train.jsonl").read_text().splitlines()]
    assert {t["tag"] for t in tags} >= {"exact", "irrelevant"}
    trained = tmp_path / "sft"
    result = qrw("train", "sft", "--model", str(tiny_checkpoint), "--data-dir", str(data), "--output-dir", str(trained),
                 "--max-steps", "4", "--per-device-train-batch-size", "8", "--learning-rate", "0.003", "--device", "cpu",
                 "--no-progress", env=env)
    assert result.returncode == 0, result.stderr
    # 5. the trained model, through the one model path: exported on first use
    model_path = qrw("model", "path", str(trained), env=env)
    assert model_path.returncode == 0, model_path.stderr
    assert (Path(model_path.stdout.strip()) / "manifest.json").is_file() and model_path.stdout.strip() != str(stored_tiny_export)

    # 6. the proxy serves it, with the catalog's brands in the brand guard
    port = os_node.free_port()
    merged = tmp_path / "proxy-plugin.yaml"
    debug = tmp_path / "debug.yaml"
    debug.write_text("proxy:\n  debug_networks: [127.0.0.1/32]\n")  # the explain report below is a debug surface
    proxy = subprocess.Popen(
        [sys.executable, "-m", "qrw.cli", "proxy", "--profile", str(built_profile), "--model", str(trained),
         "--port", str(port), "--config", str(debug), "--config-out", str(merged)], env=env, stderr=subprocess.PIPE,
        text=True)
    proxy_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while os_node.cluster_health(proxy_url) is None:
            if proxy.poll() is not None or time.monotonic() > deadline:
                proxy.kill()
                pytest.fail(f"the proxy did not start:\n{proxy.communicate(timeout=30)[1][-3000:]}")
            time.sleep(0.3)
        config = yaml.safe_load(merged.read_text())
        assert set(config["guards"]["brands"]) == {d["maker"] for d in documents}
        assert config["proxy"]["rewrite_indices"] == ["garden", "garden-*"]

        # 7. eval: the baseline direct, and what the proxy serves
        direct_report, served_report = tmp_path / "direct.json", tmp_path / "served.json"
        result = qrw("eval", "--profile", str(built_profile), "--judgments", str(judgments), "--out", str(direct_report),
                     "--quiet", env=env)
        assert result.returncode == 0, result.stderr
        result = qrw("eval", "--profile", str(built_profile), "--judgments", str(judgments), "--url", proxy_url,
                     "--out", str(served_report), "--quiet", env=env)
        assert result.returncode == 0, result.stderr
        direct, served = json.loads(direct_report.read_text()), json.loads(served_report.read_text())
        assert direct["index"] == served["index"] == "garden" and direct["queries"] == served["queries"]
        assert direct["ndcg@10"] > 0.6 and 0.0 <= served["ndcg@10"] <= 1.0

        # the proxy really ran the model on this catalog's queries
        from qrw.search.profile import load_profile
        from qrw.search.runner import search_many

        garden = load_profile(built_profile)
        answer = search_many(OpenSearch(hosts=[proxy_url], timeout=60), "garden", {"q": garden.baseline.build("oak sideboard")},
                             depth=10, headers={"X-QRW-Explain": "true"})["q"]
        assert answer.explain and answer.explain["model"]["name"] != "none", answer.explain
        assert answer.explain["model"]["origin"] in ("model", "cache"), answer.explain
    finally:
        proxy.terminate()
        proxy.wait(timeout=30)
