"""Metrics on a hand-made case; every expected value is worked out in the comments."""

import math

import pytest

from qrw.eval.metrics import (
    condensed_ndcg_at_k,
    judged_at_k,
    mean_metrics,
    ndcg_at_k,
    precision_at_k,
    query_metrics,
    recall_at_k,
)

JUDGED = {"a": 3, "b": 2, "c": 0, "d": 1}
RANKED = ["c", "a", "x", "b"]  # x is unjudged

# DCG  = 0 (c) + 7/log2(3) (a) + 0 (x) + 3/log2(5) (b) = 4.416508 + 1.292030 = 5.708538
# IDCG = 7/1 + 3/log2(3) + 1/log2(4) + 0 = 7 + 1.892789 + 0.5 = 9.392789
HAND_NDCG = 5.708538 / 9.392789
# condensed ranking [c, a, b]: 0 + 7/log2(3) + 3/log2(4) = 4.416508 + 1.5 = 5.916508
HAND_CONDENSED = 5.916508 / 9.392789


def test_ndcg_hand_computed():
    assert ndcg_at_k(RANKED, JUDGED, 10) == pytest.approx(HAND_NDCG, abs=1e-6)
    assert ndcg_at_k(RANKED, JUDGED, 10) == pytest.approx(0.607758, abs=1e-5)


def test_condensed_ndcg_drops_unjudged():
    assert condensed_ndcg_at_k(RANKED, JUDGED, 10) == pytest.approx(HAND_CONDENSED, abs=1e-6)
    assert condensed_ndcg_at_k(RANKED, JUDGED, 10) > ndcg_at_k(RANKED, JUDGED, 10)


def test_cutoff_applies():
    # only c and a are in the top 2: DCG = 7/log2(3); IDCG@2 = 7 + 3/log2(3)
    assert ndcg_at_k(RANKED, JUDGED, 2) == pytest.approx((7 / math.log2(3)) / (7 + 3 / math.log2(3)))


def test_recall_precision_judged():
    assert recall_at_k(RANKED, JUDGED, 100) == 1.0  # a and b (grade >= 2) both retrieved
    assert recall_at_k(RANKED, JUDGED, 2) == 0.5  # only a in the top 2
    assert precision_at_k(RANKED, JUDGED, 10) == 0.2  # a, b relevant, divided by k = 10
    assert judged_at_k(RANKED, JUDGED, 10) == 0.3  # c, a, b judged


def test_no_relevant_documents():
    only_irrelevant = {"a": 0, "b": 0}
    assert ndcg_at_k(["a"], only_irrelevant) == 0.0
    assert recall_at_k(["a"], only_irrelevant) is None


def test_perfect_ranking_is_one():
    assert ndcg_at_k(["a", "b", "d", "c"], JUDGED) == pytest.approx(1.0)


def test_mean_skips_undefined_recall():
    rows = [query_metrics(RANKED, JUDGED), query_metrics(["a"], {"a": 0})]
    means = mean_metrics(rows)
    assert means["recall@100"] == 1.0  # the second query has no relevant doc: left out
    assert means["ndcg@10"] == pytest.approx(HAND_NDCG / 2, abs=1e-6)
