"""Calibration: the pure cross-validation on a hand-made case, and the CLI on the real node."""

import json
import subprocess
import sys

import pytest

from qrw.eval.metrics import ndcg_at_k
from qrw.plugin.calibrate import Grid, calibrate
from qrw.plugin.config import load_config

GOOD = {"exact": 1.0, "substitute": 0.0, "weak": 0.0, "irrelevant": 0.0}
RISKY = {"exact": 0.4, "substitute": 0.0, "weak": 0.6, "irrelevant": 0.0}


def _rewrite_clauses(node):
    """Every (query text, boost) of a multi_match with a boost anywhere in ``node``."""
    if isinstance(node, dict):
        spec = node.get("multi_match")
        if isinstance(spec, dict) and "boost" in spec:
            yield spec["query"], spec["boost"]
        for value in node.values():
            yield from _rewrite_clauses(value)
    elif isinstance(node, list):
        for value in node:
            yield from _rewrite_clauses(value)


def fake_search(bodies):
    """Search stand-in for the pure unit test: 'bad' at full weight pushes junk above the good doc."""
    ranked = {}
    for key, body in bodies.items():
        clauses = dict(_rewrite_clauses(body))
        if clauses.get("bad rewrite") == 1.0:
            ranked[key] = ["junk", "g"]
        elif "good rewrite" in clauses:
            ranked[key] = ["g"]
        else:
            ranked[key] = []
    return ranked


def test_calibration_picks_the_gate_that_keeps_good_and_blocks_risky():
    queries = [f"query {chr(97 + i)}" for i in range(10)]
    outcomes = {q: [("good rewrite", GOOD), ("bad rewrite", RISKY)] for q in queries}
    qrels = {q: {"g": 3} for q in queries}
    result = calibrate(outcomes, qrels, fake_search, lambda q: {"query": {"multi_match": {"query": q, "fields": ["t"]}}},
                       lambda ranked, judged: ndcg_at_k(ranked, judged, 10), folds=5)
    assert result.baseline_score == 0.0 and result.cv_score == 1.0 and result.best_train_score == 1.0
    assert 0.0 < result.ungated_score < 1.0  # every rewrite at full weight lets the risky one hurt
    assert result.best.full_min > 0.4  # the risky rewrite is never at full weight
    assert len(result.folds) == 5 and sum(f["queries"] for f in result.folds) == 10
    assert result.searched < len(Grid().points()) * len(queries)  # identical kept sets are searched once


def test_calibration_needs_enough_queries():
    from qrw.errors import ConfigError

    with pytest.raises(ConfigError, match="cross-validation"):
        calibrate({"a": []}, {"a": {"d": 1}}, fake_search, lambda q: {}, lambda r, j: 0.0, folds=5)


@pytest.mark.opensearch
def test_calibrate_cli_on_the_real_node(tmp_path, opensearch_url, indexed_catalog, judgments_path):
    from qrw.eval.judgments import load_judgments

    queries = list(load_judgments(judgments_path))[:12]
    table = tmp_path / "rewrites.jsonl"
    table.write_text("".join(json.dumps({"query": q, "rewrites": [
        {"text": f"{q} accessories", "probabilities": {"exact": 0.2, "substitute": 0.5, "weak": 0.3}},
        {"text": "toaster", "tag": "irrelevant"}]}) + "\n" for q in queries))
    train = tmp_path / "train.txt"
    train.write_text("\n".join(queries) + "\n")
    out = tmp_path / "gate.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "qrw.cli", "calibrate", "--model", str(table), "--judgments", str(judgments_path),
         "--queries", str(train), "--url", opensearch_url, "--index", indexed_catalog, "--folds", "3", "--out", str(out)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["queries"] == 12 and 0.0 <= report["cv_score"] <= 1.0 and len(report["folds"]) == 3
    assert load_config(out).gate.model_dump() == report["best"]
