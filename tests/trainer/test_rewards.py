"""GRPO rewards: pure functions on hand-made inputs, then relevance against the real index."""

from __future__ import annotations

import pytest

from qrw.trainer.facets import Facets
from qrw.trainer.rewards import (
    expected_grade,
    make_conversion_reward,
    make_drift_guard,
    make_relevance_reward,
    simulated_purchases,
    validity,
)


class TableSearcher:
    """A fixed result table standing in for the index in pure unit tests (integration tests use the real node)."""

    def __init__(self, table):
        self.table = table

    def search(self, texts):
        return {t: self.table.get(t, []) for t in texts}


QRELS = {"hp toner": {"a": 3, "b": 3, "c": 2, "d": 0}}
FACETS = {
    "s": Facets("s", "HP", "toner cartridge", "black", "HP 305 toner cartridge black"),
    "n": Facets("n", "HP", "toner cartridge", "", "HP 301 toner cartridge cyan"),
    "o": Facets("o", "Canon", "ink cartridge", "", "Canon PG-540 ink cartridge"),
}


def test_validity_flags_empty_copy_and_group_duplicates():
    prompts = ["p1"] * 4 + ["p2"]
    completions = [" HP toner cartridge", " hp  TONER", " HP toner cartridge", "\n", " HP toner cartridge"]
    queries = ["hp toner"] * 4 + ["other"]
    assert validity(prompts, completions, query=queries) == [1.0, 0.0, 0.0, 0.0, 1.0]
    assert validity.__name__ == "validity"


def test_drift_guard_brand_and_numbers():
    guard = make_drift_guard(["HP", "Canon", "Western Digital"])
    queries = ["hp toner 305", "hp toner 305", "hp toner 305", "western digital 2tb", "toner"]
    completions = [" HP 305 toner cartridge", " Canon 305 toner", " HP toner 304", " WD 2TB", " Canon toner"]
    assert guard(["p"] * 5, completions, query=queries) == [0.0, -1.0, -1.0, -1.0, 0.0]
    assert guard.__name__ == "drift_guard"


def test_relevance_judged_pseudo_and_model_mix():
    searcher = TableSearcher({"good": ["a", "b", "c"], "bad": ["d", "x"], "hp cart": ["s", "n", "o"]})
    reward = make_relevance_reward(searcher, QRELS, FACETS, k=3, tag_weight=0.5)
    prompts = ["p"] * 4
    kwargs = dict(query=["hp toner", "hp toner", "hp toner", "hp toner z"], kind=["judged", "judged", "judged", "pseudo"],
                  source_id=["", "", "", "s"])
    scores = reward(prompts, [" good", " bad", "", " hp cart"], **kwargs)
    assert scores[0] == pytest.approx(8 / 9)  # (3 + 3 + 2) / 3 slots / 3
    assert scores[1] == 0.0 and scores[2] == 0.0
    assert scores[3] == pytest.approx((3 + 2 + 0) / 3 / 3)
    reward.tagger = lambda pairs: [1.0 for _ in pairs]
    mixed = reward(prompts, [" good", " bad", "", " hp cart"], **kwargs)
    assert mixed[0] == pytest.approx(0.5 * 8 / 9 + 0.5) and mixed[1] == pytest.approx(0.5) and mixed[2] == 0.0
    assert reward.__name__ == "relevance"


def test_conversion_is_simulated_and_normalised():
    searcher = TableSearcher({"ideal": ["a", "b", "c", "d"], "reversed": ["d", "c", "b", "a"], "hp cart": ["o", "s"]})
    reward = make_conversion_reward(searcher, QRELS, FACETS, k=4)
    assert reward.__name__ == "conversion_simulated"
    scores = reward(["p"] * 3, [" ideal", " reversed", " hp cart"], query=["hp toner"] * 3,
                    kind=["judged", "judged", "pseudo"], source_id=["", "", "s"])
    assert scores[0] == pytest.approx(1.0)
    assert 0.0 < scores[1] < scores[0]
    assert scores[2] == pytest.approx(1 / 1.584962500721156)  # source at rank 2: 1/log2(3)
    assert simulated_purchases([0, 0]) == 0.0


def test_expected_grade_in_tag_order():
    assert expected_grade([1, 0, 0, 0]) == 1.0  # all mass on "exact" (grade 3)
    assert expected_grade([0, 0, 0, 1]) == 0.0


@pytest.mark.opensearch
def test_relevance_against_the_real_index(opensearch_url, indexed_catalog, judgments_path):
    from qrw.eval.judgments import load_judgments
    from qrw.trainer.retrieval import Searcher

    qrels = load_judgments(judgments_path)
    query = next(iter(qrels))
    best = max(qrels[query], key=qrels[query].get)
    searcher = Searcher.connect(opensearch_url, indexed_catalog)
    reward = make_relevance_reward(searcher, qrels, {}, k=10, tag_weight=0.0)
    scores = reward(["p", "p"], [" " + query, " zzzz qqqq"], query=[query, query], kind=["judged"] * 2, source_id=["", ""])
    assert scores[0] > scores[1] == 0.0
    assert best  # the judged query has judged products
