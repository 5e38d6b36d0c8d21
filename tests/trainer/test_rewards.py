"""GRPO rewards: pure parts on hand-made inputs, the measured gain on the real catalog, in process and on the node."""

from __future__ import annotations

import json

import pytest

from qrw.trainer.rewards import expected_purchases, validity


def test_validity_accepts_lists_and_none_and_rejects_copies_and_garbage():
    prompts = ["p"] * 5
    completions = [" flash drive ; usb flash drive", " none", " USB  stick", "\n", " ; ;"]
    assert validity(prompts, completions, query=["usb stick"] * 5) == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_validity_rejects_a_rewrite_that_repeats_a_word():
    completions = [" smartwatch smartwatch", " flash drive ; radio 2060 Radio", " usb flash drive ; flash drive"]
    assert validity(["p"] * 3, completions, query=["smart watch", "rtx 2060", "usb stick"]) == [0.0, 0.0, 1.0]


def test_simulated_purchases_reward_relevant_products_on_top():
    assert expected_purchases([3, 0, 0]) > expected_purchases([0, 3, 0]) > expected_purchases([0, 0, 0]) == 0.0


@pytest.fixture(scope="module")
def context(catalog, judgments_path):
    from qrw.eval.judgments import load_judgments
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.trainer.facets import CatalogFacets, by_type
    from qrw.trainer.intent import MergeSettings, judged_intent
    from qrw.trainer.lexical import LexicalIndex
    from qrw.trainer.rewards import RewardContext

    facets = CatalogFacets(catalog)
    qrels = load_judgments(judgments_path)
    judged = {q: judged_intent(q, qrels[q], facets) for q in ("sd card", "usb stick")}
    return RewardContext(LexicalIndex.from_products(catalog, DEFAULT_BASELINE), facets, judged, MergeSettings(), by_type(facets))


def test_relevance_is_the_measured_gain_of_the_whole_list(context):
    from qrw.trainer.rewards import make_conversion_reward, make_drift_guard, make_relevance_reward

    relevance = make_relevance_reward(context)
    judged = json.dumps({"kind": "judged"})
    completions = [" memory card", " none", " card reader", " memory card ; card reader"]
    scores = relevance(["p"] * 4, completions, query=["sd card"] * 4, intent=[judged] * 4)
    assert scores[0] > 0.2 and scores[1] == 0.0 and scores[2] < -0.2
    assert scores[2] < scores[3]  # a helpful rewrite in the list offsets part of a harmful one
    conversion = make_conversion_reward(context)(["p"] * 2, [" memory card", " none"], query=["sd card"] * 2, intent=[judged] * 2)
    assert conversion[0] > 0 and conversion[1] == 0.0
    pseudo = json.dumps({"kind": "pseudo", "ptype": "memory card", "brand": None, "values": []})
    assert relevance(["p"], [" memory card"], query=["sd card"], intent=[pseudo])[0] > 0
    drift = make_drift_guard(context.facets)(["p"] * 3, [" memory card", " hp memory card", " memory card 64 gb"],
                                             query=["sd card"] * 3)
    assert drift == [0.0, -1.0, -1.0]



def test_the_two_rewards_of_one_completion_share_one_ranking(context):
    from qrw.trainer.rewards import RewardContext, make_conversion_reward, make_relevance_reward

    class Counting(RewardContext):
        calls = 0

        def ranked(self, query, rewrites):
            Counting.calls += 1
            return super().ranked(query, rewrites)

    counting = Counting(context.index, context.facets, context.judged, context.merge, context.members)
    judged = json.dumps({"kind": "judged"})
    args = (["p"] * 2, [" memory card", " card reader"])
    relevance = make_relevance_reward(counting)(*args, query=["sd card"] * 2, intent=[judged] * 2)
    conversion = make_conversion_reward(counting)(*args, query=["sd card"] * 2, intent=[judged] * 2)
    assert Counting.calls == 2  # one per completion, not one per completion and reward
    assert relevance == make_relevance_reward(context)(*args, query=["sd card"] * 2, intent=[judged] * 2)
    assert conversion[0] > 0 > conversion[1]


@pytest.mark.opensearch
def test_node_and_in_process_rewards_agree(context, opensearch_url, indexed_catalog):
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.connect import open_client
    from qrw.trainer.rewards import NodeRewardContext, make_relevance_reward

    node = NodeRewardContext(open_client(opensearch_url), indexed_catalog, context.facets, context.judged, context.merge,
                             context.members, DEFAULT_BASELINE)
    judged = json.dumps({"kind": "judged"})
    completions = [" flash drive", " ink stick", " memory card", " none"]
    args = (["p"] * 4, completions)
    kwargs = dict(query=["usb stick"] * 4, intent=[judged] * 4)
    mine = make_relevance_reward(context)(*args, **kwargs)
    theirs = make_relevance_reward(node)(*args, **kwargs)
    assert [round(x, 1) for x in mine] == [round(x, 1) for x in theirs]
    assert theirs[0] > 0.5 and theirs[1] < 0 and theirs[3] == 0.0
