"""Against the real OpenSearch node of the test session: index, search, evaluate, fail clearly."""

import json
import subprocess
import sys

import pytest

from qrw.errors import IndexMissingError, UnreachableError
from qrw.eval.harness import evaluate_run
from qrw.eval.runs import produce_run
from qrw.search.baseline import DEFAULT_BASELINE
from qrw.search import node as os_node
from qrw.search.connect import open_client
from qrw.search.index import index_catalog


def qrw(*args, timeout=300):
    """Run the real console entry point in a subprocess, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "qrw.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_node_reports_healthy(opensearch_node):
    report = os_node.status(opensearch_node)
    assert report["running"] and report["health"] in ("green", "yellow")


def test_index_holds_whole_catalog(opensearch_url, indexed_catalog):
    client = open_client(opensearch_url)
    assert client.count(index=indexed_catalog)["count"] == 19406


def test_reindex_is_idempotent(opensearch_url, indexed_catalog, catalog):
    client = open_client(opensearch_url)
    before = client.indices.get_alias(name=indexed_catalog)
    result = index_catalog(client, catalog, indexed_catalog, progress=False)
    assert result["action"] == "unchanged" and result["documents"] == 19406
    assert client.indices.get_alias(name=indexed_catalog) == before


def test_reindex_of_changed_catalog_swaps_alias(opensearch_url, catalog):
    client = open_client(opensearch_url)
    first = index_catalog(client, catalog[:50], "swap-test", progress=False)
    second = index_catalog(client, catalog[:60], "swap-test", progress=False)
    assert first["index"] != second["index"] and second["documents"] == 60
    assert not client.indices.exists(index=first["index"])  # the old index is gone
    client.indices.delete(index=second["index"])


def test_known_product_found_by_title(opensearch_url, indexed_catalog, catalog):
    product = next(p for p in catalog if p.id == "3920564")  # Xerox 006R90321 toner cartridge
    run = produce_run(open_client(opensearch_url), indexed_catalog, [product.title], DEFAULT_BASELINE)
    assert run[product.title][0] == "3920564"


def test_eval_cli_on_hand_made_judgments(tmp_path, opensearch_url, indexed_catalog, catalog):
    # One query whose only judged product is the exact-title match (grade 3), found at rank 1:
    # nDCG@10 = 1, recall@100 = 1, precision@10 = 1/10, judged@10 = 1/10.
    product = next(p for p in catalog if p.id == "3920564")
    judgments = tmp_path / "j.csv"
    judgments.write_text(f'query,docid,rating\n"{product.title}",3920564,3\n')
    out = tmp_path / "out.json"
    result = qrw("eval", "--judgments", str(judgments), "--url", opensearch_url, "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    for key in ("queries", "ndcg@10", "recall@100", "precision@10", "judged@10", "condensed_ndcg@10", "per_query"):
        assert key in report
    assert report["queries"] == 1
    assert report["ndcg@10"] == pytest.approx(1.0)
    assert report["recall@100"] == pytest.approx(1.0)
    assert report["precision@10"] == pytest.approx(0.1)
    assert report["judged@10"] == pytest.approx(0.1)


def test_eval_cli_on_development_judgments(tmp_path, opensearch_url, indexed_catalog, judgments_path):
    out = tmp_path / "dev.json"
    result = qrw("eval", "--judgments", str(judgments_path), "--url", opensearch_url, "--json", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["queries"] == 93 and len(report["per_query"]) == 93
    assert 0.0 < report["ndcg@10"] < 1.0


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "judgments file not found"),
        ("query;docid;rating\nlaptop;1;3\n", "missing column"),
        ("query,docid,rating\nlaptop,1,three\n", "is not an integer"),
    ],
)
def test_eval_cli_bad_judgments(tmp_path, opensearch_url, content, message):
    path = tmp_path / "j.csv"
    if content is not None:
        path.write_text(content)
    result = qrw("eval", "--judgments", str(path), "--url", opensearch_url)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_cli_unknown_index(tmp_path, opensearch_url, judgments_path):
    result = qrw("eval", "--judgments", str(judgments_path), "--url", opensearch_url, "--index", "no-such-index")
    assert result.returncode == 2
    assert "index 'no-such-index' does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_cli_unreachable_url(judgments_path):
    port = os_node.free_port()  # nothing listens there
    result = qrw("eval", "--judgments", str(judgments_path), "--url", f"http://127.0.0.1:{port}")
    assert result.returncode == 2
    assert "cannot reach OpenSearch" in result.stderr
    assert "Traceback" not in result.stderr


def test_library_errors_are_typed(opensearch_url):
    with pytest.raises(IndexMissingError):
        produce_run(open_client(opensearch_url), "no-such-index", ["x"], DEFAULT_BASELINE)
    with pytest.raises(UnreachableError):
        open_client(f"http://127.0.0.1:{os_node.free_port()}")


def test_index_cli_bad_data_dir(tmp_path, opensearch_url):
    result = qrw("index", "--url", opensearch_url, "--data", str(tmp_path))
    assert result.returncode == 2 and "catalog folder not found" in result.stderr


def test_evaluate_run_counts_missing_queries_as_empty():
    report = evaluate_run({}, {"q": {"a": 3}})
    assert report["ndcg@10"] == 0.0 and report["per_query"][0]["hits"] == 0
