"""``--profile`` and the one model path in ``qrw eval`` and ``qrw calibrate``, on the example shop index."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop"
pytestmark = pytest.mark.opensearch


def qrw(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qrw.cli", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_eval_reads_index_and_baseline_from_the_profile(opensearch_url, shop_index, tmp_path):
    out = tmp_path / "shop.json"
    result = qrw("eval", "--profile", str(SHOP / "profile.yaml"), "--judgments", str(SHOP / "judgments.csv"),
                 "--out", str(out), "--quiet", env={"QRW_OPENSEARCH_URL": opensearch_url})
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["index"] == "shop" and report["profile"] == "shop" and report["queries"] == 36
    assert report["baseline"]["fields"] == ["all_text", "maker.stem^1", "all_text.join^1"]
    assert report["ndcg@10"] > 0.6


def test_eval_writes_under_runs_by_default(opensearch_url, shop_index, tmp_path):
    result = subprocess.run([sys.executable, "-m", "qrw.cli", "eval", "--profile", str(SHOP / "profile.yaml"),
                             "--judgments", str(SHOP / "judgments.csv"), "--url", opensearch_url, "--quiet"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "runs" / "eval" / "report.json").read_text())["queries"] == 36


def test_eval_without_model_uses_the_default_model(opensearch_url, indexed_catalog, tiny_checkpoint, stored_tiny_export,
                                                   model_cache, judgments_path, tmp_path):
    # the default model is a checkpoint folder here: resolved to its cached export, not exported again
    judgments = tmp_path / "j.csv"
    rows = judgments_path.read_text().splitlines()
    queries = sorted({line.split(",")[0] for line in rows[1:]})[:3]
    judgments.write_text("\n".join([rows[0], *(r for r in rows[1:] if r.split(",")[0] in queries)]) + "\n")
    out = tmp_path / "cmp.json"
    result = qrw("eval", "--judgments", str(judgments), "--url", opensearch_url, "--systems", "original,gated",
                 "--out", str(out), env={"QRW_CACHE_DIR": str(model_cache), "QRW_DEFAULT_REWRITER": str(tiny_checkpoint)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "exporting" not in result.stderr
    systems = json.loads(out.read_text())["systems"]
    assert set(systems) == {"original", f"gated:{stored_tiny_export.name}"}


def test_comparing_systems_on_a_profile_passes_its_baseline(opensearch_url, shop_index, tmp_path):
    table = tmp_path / "t.jsonl"
    table.write_text(json.dumps({"query": "couch", "rewrites": [{"text": "sofa", "tag": "exact"}]}) + "\n")
    out = tmp_path / "cmp.json"
    result = qrw("eval", "--profile", str(SHOP / "profile.yaml"), "--judgments", str(SHOP / "judgments.csv"),
                 "--url", opensearch_url, "--systems", "original,gated", "--model", str(table), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["index"] == "shop"
    couch = next(row for row in report["systems"][f"gated:{table.name}"]["per_query"] if row["query"] == "couch")
    assert couch["rewrites"] == ["sofa"]


def test_calibrate_reads_the_profile(opensearch_url, shop_index, tmp_path):
    table = tmp_path / "t.jsonl"
    queries = ["couch", "sofa", "bookcase", "credenza", "kitchen table", "flower pot"]
    table.write_text("".join(json.dumps({"query": q, "rewrites": [
        {"text": f"{q} furniture", "probabilities": {"exact": 0.6, "substitute": 0.3, "weak": 0.1}},
        {"text": "saucepan", "tag": "irrelevant"}]}) + "\n" for q in queries))
    train = tmp_path / "train.txt"
    train.write_text("\n".join(queries) + "\n")
    out = tmp_path / "gate.yaml"
    result = qrw("calibrate", "--profile", str(SHOP / "profile.yaml"), "--model", str(table), "--judgments",
                 str(SHOP / "judgments.csv"), "--queries", str(train), "--folds", "3", "--out", str(out),
                 env={"QRW_OPENSEARCH_URL": opensearch_url})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["index"] == "shop" and report["profile"] == "shop" and report["queries"] == 6
    assert report["brands"] == 10  # the shop's makers, as the proxy's brand guard sees them
    assert out.read_text().startswith("gate:")
