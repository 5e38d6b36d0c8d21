"""`qrw eval --systems` against the real node, with a rewrite table in the model's place."""

import json
import subprocess
import sys

import pytest

TABLE = [
    # "laptop": the catalog says "notebook"; one good rewrite, one drifted one the gate must drop
    {"query": "laptop", "rewrites": [{"text": "notebook", "tag": "exact"}, {"text": "toner cartridge", "tag": "irrelevant"}]},
    {"query": "usb stick", "rewrites": [{"text": "usb flash drive", "tag": "exact"}]},
]


@pytest.fixture()
def small_judgments(tmp_path, judgments_path):
    lines = judgments_path.read_text().splitlines()
    keep = [lines[0]] + [line for line in lines[1:] if line.split(",")[0] in ("laptop", "usb stick")]
    path = tmp_path / "j.csv"
    path.write_text("\n".join(keep) + "\n")
    return path


def test_compare_systems_json_and_plots(tmp_path, opensearch_url, indexed_catalog, small_judgments):
    table = tmp_path / "rewrites.jsonl"
    table.write_text("\n".join(json.dumps(row) for row in TABLE) + "\n")
    out = tmp_path / "cmp.json"
    result = subprocess.run(
        [sys.executable, "-m", "qrw.cli", "eval", "--judgments", str(small_judgments), "--url", opensearch_url,
         "--systems", "original,legacy,prf,ungated,gated", "--model", str(table), "--json", str(out),
         "--plots", str(tmp_path / "plots"), "--report", str(tmp_path / "report.md")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["queries"] == 2
    systems = report["systems"]
    assert set(systems) == {"original", "legacy", "prf", "ungated:rewrites.jsonl", "gated:rewrites.jsonl"}
    for system in systems.values():
        for key in ("ndcg@10", "condensed_ndcg@10", "recall@100", "precision@10", "judged@10", "harm_rate",
                    "win_rate", "increment", "rewrite_relevance_rate", "latency_ms", "per_query", "median_total_hits",
                    "served_rewrites", "adds_brand_or_number_rate"):
            assert key in system
        assert set(system["latency_ms"]) == {"p50", "p95"}
    ungated, gated = systems["ungated:rewrites.jsonl"], systems["gated:rewrites.jsonl"]
    # the gate dropped the irrelevant rewrite: fewer rewrites counted in its relevance rate
    assert gated["rewrite_relevance_rate"] >= ungated["rewrite_relevance_rate"]
    assert "p_value_vs_original" in gated and len(gated["ndcg@10_delta_ci95"]) == 2
    assert gated["served_rewrites"] == 2 and ungated["served_rewrites"] == 3  # the irrelevant one was dropped
    laptop = next(row for row in gated["per_query"] if row["query"] == "laptop")
    assert [d["action"] for d in laptop["decisions"]] == ["full", "drop"] and "P(exact)" in laptop["decisions"][1]["reason"]
    assert gated["adds_brand_or_number_rate"] == 0.0
    # the rewrite clauses use operator "and": rewriting adds only documents holding every rewrite term
    assert ungated["median_total_hits"] < 3 * systems["original"]["median_total_hits"]
    report_md = (tmp_path / "report.md").read_text()
    assert "| gated:rewrites.jsonl |" in report_md and "largest wins" in report_md and "largest losses" in report_md
    assert (tmp_path / "plots" / "ndcg_deltas.png").stat().st_size > 5000
    assert (tmp_path / "plots" / "latency_cdf.png").stat().st_size > 5000


def test_unknown_system_is_a_clear_error(small_judgments, opensearch_url):
    result = subprocess.run(
        [sys.executable, "-m", "qrw.cli", "eval", "--judgments", str(small_judgments), "--url", opensearch_url,
         "--systems", "original,magic"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown system 'magic'" in result.stderr and "Traceback" not in result.stderr


def test_split_folds_pick_the_validation_or_the_training_queries(tmp_path, small_judgments, opensearch_url, indexed_catalog):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train_queries": ["laptop"], "valid_queries": ["USB stick"]}))
    seen = {}
    for fold in ("valid", "train"):
        out = tmp_path / f"{fold}.json"
        result = subprocess.run(
            [sys.executable, "-m", "qrw.cli", "eval", "--judgments", str(small_judgments), "--url", opensearch_url,
             "--split", str(split), "--fold", fold, "--json", str(out)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        seen[fold] = [row["query"] for row in json.loads(out.read_text())["per_query"]]
    assert seen == {"valid": ["usb stick"], "train": ["laptop"]}  # matched case-insensitively
    split.write_text(json.dumps({"valid_queries": ["usb stick"]}))
    result = subprocess.run(
        [sys.executable, "-m", "qrw.cli", "eval", "--judgments", str(small_judgments), "--url", opensearch_url,
         "--split", str(split), "--fold", "train"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "train_queries" in result.stderr and "Traceback" not in result.stderr


def test_plugin_config_sets_the_merge_mode_of_eval(tmp_path, opensearch_url, indexed_catalog, small_judgments):
    """`--plugin-config` reaches the merge: under `rerank` even the full-weight `notebook` only reorders
    what `laptop` matches (the hit count stays the original's), under `expand` it adds notebooks."""
    table = tmp_path / "rewrites.jsonl"
    table.write_text("\n".join(json.dumps(row) for row in TABLE) + "\n")
    totals = {}
    for mode in ("rerank", "expand"):
        config = tmp_path / f"{mode}.yaml"
        config.write_text(f"merge:\n  mode: {mode}\n")
        out = tmp_path / f"{mode}.json"
        result = subprocess.run(
            [sys.executable, "-m", "qrw.cli", "eval", "--judgments", str(small_judgments), "--url", opensearch_url,
             "--systems", "original,gated", "--model", str(table), "--plugin-config", str(config), "--json", str(out), "--quiet"],
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr
        systems = json.loads(out.read_text())["systems"]
        totals[mode] = {name: {row["query"]: row["total_hits"] for row in system["per_query"]} for name, system in systems.items()}
    original, gated = totals["rerank"]["original"], totals["rerank"]["gated:rewrites.jsonl"]
    assert gated == original
    assert totals["expand"]["gated:rewrites.jsonl"]["laptop"] > original["laptop"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("merge:\n  mode: widen\n")
    result = subprocess.run([sys.executable, "-m", "qrw.cli", "eval", "--judgments", str(small_judgments), "--url", opensearch_url,
                             "--systems", "original,gated", "--model", str(table), "--plugin-config", str(bad)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "merge.mode" in result.stderr


def test_ungated_differs_from_gated_only_by_the_gate(tmp_path, opensearch_url, indexed_catalog, judgments_path):
    """A misspelled query: both systems serve the index's respelling and the model's rewrites of the respelled
    text; only the gate's decisions differ (the drifted rewrite is dropped by one and served by the other)."""
    lines = judgments_path.read_text().splitlines()
    rows = [line for line in lines[1:] if line.split(",")[0] == "laptop"]
    judgments = tmp_path / "j.csv"
    judgments.write_text("\n".join([lines[0]] + ["labtop" + row[len("laptop"):] for row in rows]) + "\n")
    table = tmp_path / "rewrites.jsonl"
    table.write_text("\n".join(json.dumps(row) for row in TABLE) + "\n")
    out = tmp_path / "cmp.json"
    result = subprocess.run(
        [sys.executable, "-m", "qrw.cli", "eval", "--judgments", str(judgments), "--url", opensearch_url,
         "--systems", "ungated,gated", "--model", str(table), "--json", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    systems = json.loads(out.read_text())["systems"]
    ungated, gated = systems["ungated:rewrites.jsonl"], systems["gated:rewrites.jsonl"]
    assert ungated["index_respellings"] == gated["index_respellings"] == 1
    served = {name: [(d["text"], d["action"]) for d in system["per_query"][0]["decisions"]]
              for name, system in (("ungated", ungated), ("gated", gated))}
    assert served["ungated"] == [("notebook", "full"), ("toner cartridge", "full"), ("laptop", "respelling")]
    assert served["gated"] == [("notebook", "full"), ("toner cartridge", "drop"), ("laptop", "respelling")]
