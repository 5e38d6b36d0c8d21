"""The exhaustive phrase ceiling (benchmarks/vocabulary_ceiling.py) reads terms the way the index does.

Its shortcut skips a phrase when no relevant product holds all of the phrase's terms; that is only
lossless if the batched ``_analyze`` splits terms back to the right text, so it is checked against one
call per text on the real node.
"""

import importlib.util
from pathlib import Path

from qrw.search.baseline import STEMMED_ANALYZER
from qrw.search.connect import open_client

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "vocabulary_ceiling.py"


def _module():
    spec = importlib.util.spec_from_file_location("vocabulary_ceiling", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_batched_analysis_matches_one_call_per_text(opensearch_url, indexed_catalog):
    ceiling = _module()
    client = open_client(opensearch_url)
    texts = ["Laptops Café's", "", "mouse", "USB-C\nhubs", "a", "Notebooks and bags " * 40, "x", "Flash drives"]
    one_by_one = [frozenset(t["token"] for t in client.indices.analyze(
        index=indexed_catalog, body={"analyzer": STEMMED_ANALYZER, "text": text.replace("\n", " ")})["tokens"]) for text in texts]
    # a small character budget forces several calls and boundaries between texts inside each call
    assert ceiling.analyzed(client, indexed_catalog, texts, STEMMED_ANALYZER, max_chars=60) == one_by_one
    assert ceiling.analyzed(client, indexed_catalog, texts, STEMMED_ANALYZER) == one_by_one


def test_title_word_runs_keep_runs_found_in_enough_titles():
    ceiling = _module()
    titles = ["HP Laser Printer", "Canon laser printer A4", "Brother Laser Printer", "laser pointer"]
    assert ceiling.title_word_runs(titles, min_df=3) == ["laser", "laser printer", "printer"]
    assert "hp laser printer" not in ceiling.title_word_runs(titles, min_df=1, max_words=2)
    assert "hp laser printer" in ceiling.title_word_runs(titles, min_df=1, max_words=3)
