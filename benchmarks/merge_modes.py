"""Should a rewrite be allowed to add documents? ``expand`` against ``rerank`` merging (a measurement).

Why: the plugin OR-merges rewrites into the user's query (``merge.mode: expand``), so a wrong rewrite
can bring in documents the user's own words never match (``netflix`` -> ``network cable`` turns a
query with no results into a page of cables). ``rerank`` also keeps the original clause as a filter:
rewrites then only reorder what the query matches. It cannot rescue a query whose words match none of
the relevant products, so this script measures both before choosing, on the training folds of the
judged queries only (fold 0, the validation fold, is never searched):

* for every training query, the label-free candidates of ``trainer.candidates.CandidateGenerator``
  (the ones the training labels are measured on), each merged alone by the plugin's own
  ``merge_rewrites`` (``operator: and``, as shipped) at ``--boosts``, under each mode;
* per setting: mean nDCG@10 change against the baseline, candidates that help / hurt by more than
  0.05, the oracle (best candidate per query, none allowed: the ceiling of a perfect gate) and the
  median total hits relative to the baseline's; and how many queries without results get results.

    .venv/bin/python benchmarks/merge_modes.py --json docs/eval/merge_modes.json
"""

from __future__ import annotations

import argparse
import collections
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_candidates import candidate_generator, emit, training_queries  # noqa: E402

HARM = 0.05
ENDS = ("expand", "rerank")
"""The two ends of ``merge.mode``; ``confident`` picks between them per rewrite (by its tag), which a
candidate merged alone, untagged, does not have."""


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch
    from tqdm import tqdm

    from qrw.eval.metrics import ndcg_at_k
    from qrw.plugin.merge import WeightedRewrite, merge_rewrites
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.runner import search_many
    from qrw.trainer.catalog import TrainingCatalog

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--index", default="products", help="alias of the baseline's index (`qrw sandbox` / `qrw index`)")
    parser.add_argument("--boosts", default="0.3,0.5,1.0")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()

    qrels, train = training_queries()
    generator = candidate_generator(TrainingCatalog.icecat())
    pairs = [(q, c) for q in tqdm(train, desc="proposing candidates", unit="query") for c in generator.propose(q)]
    client = OpenSearch(args.url, timeout=120)

    def run(bodies: dict) -> dict:
        ranked = search_many(client, args.index, bodies, depth=10, batch_size=20)
        return {key: (ndcg_at_k(ranked[key].ids, qrels[key[0] if isinstance(key, tuple) else key]), ranked[key].total) for key in bodies}

    base = run({q: DEFAULT_BASELINE.build(q) for q in train})
    base_mean = statistics.fmean(score for score, _ in base.values())
    without_results = [q for q in train if base[q][1] == 0]
    report: dict = {"train_queries": len(train), "candidates": len(pairs), "baseline_ndcg@10": base_mean,
                    "queries_without_results": len(without_results), "settings": {}}
    for boost in (float(b) for b in args.boosts.split(",")):
        for mode in ENDS:
            scores = run({(q, c): merge_rewrites(DEFAULT_BASELINE.build(q), [WeightedRewrite(c, boost)], "and", mode) for q, c in pairs})
            gains: dict[str, dict[str, float]] = collections.defaultdict(dict)
            for (q, c), (score, _) in scores.items():
                gains[q][c] = score - base[q][0]
            flat = [g for per in gains.values() for g in per.values()]
            oracle = sum(max(0.0, *per.values()) for per in gains.values()) / len(train)
            report["settings"][f"{mode}^{boost:g}"] = {
                "mean_gain": round(statistics.fmean(flat), 4), "help": sum(g > HARM for g in flat), "hurt": sum(g < -HARM for g in flat),
                "oracle_ratio": round((base_mean + oracle) / base_mean, 4),
                "median_hits_vs_baseline": round(statistics.median(total / max(base[q][1], 1) for (q, _), (_, total) in scores.items()), 3),
                "queries_without_results_given_results": len({q for (q, _), (_, total) in scores.items() if q in without_results and total > 0}),
            }
    report["method"] = {
        "machine": platform.platform(), "python": platform.python_version(), "opensearch": client.info()["version"]["number"],
        "queries": "judged training folds (fold 0 = validation, never searched)", "harm_threshold": HARM,
        "merge": "qrw.plugin.merge.merge_rewrites, rewrite operator 'and', one candidate per body",
        "seconds": round(time.perf_counter() - started, 1)}
    emit(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
