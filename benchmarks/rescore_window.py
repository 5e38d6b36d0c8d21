"""Does confining a rewrite to the baseline's top K (an OpenSearch rescore window) bound its harm? (a measurement)

Why: a wrong rewrite hurts by lifting products from deep in the match set (or outside it) into the
top 10; in this catalog many of those are unjudged and count as 0. ``merge.mode: confident`` already
keeps unsure rewrites inside the original query's match set; a rescore window is narrower: the
rewrite may only reorder the baseline's own top K. This script measures what that costs in ceiling
and saves in harm, and whether the sentence-encoder judge of ``semantic_judge.py`` gates better
inside such a window, on the judged training folds only.

Candidates: every candidate of ``semantic_judge.py --rows`` (all label-free sources; pass its JSON
lines file). Each is sent as
``{"query": baseline, "rescore": {"window_size": K, "query": {"rescore_query": text mirror,
"rescore_query_weight": w}}}`` (the rewrite stays query text in a structured clause), against an
OR-merge ``bool.should[baseline, text mirror^w]``.

    .venv/bin/python benchmarks/semantic_judge.py --encoder ENCODER_DIR --candidates trainer,encoder-types,encoder-phrases --rows runs/candidates_train.jsonl
    .venv/bin/python benchmarks/rescore_window.py --rows runs/candidates_train.jsonl --encoder ENCODER_DIR --json docs/eval/rescore_window.json
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from semantic_judge import HARM, judge_gate, judged_similarity, title_embeddings
from training_candidates import emit, training_queries

WINDOWS = (10, 20, 30, 50)
WEIGHTS = (0.5, 1.0)
JUDGE_THRESHOLDS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.08)


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch

    from qrw.eval.metrics import ndcg_at_k
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.runner import search_many
    from qrw.trainer.catalog import TrainingCatalog
    from qrw.trainer.encoder_bridge import SentenceEncoder, default_cache_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=Path, required=True, help="candidates written by semantic_judge.py --rows (training folds)")
    parser.add_argument("--encoder", type=Path, default=None, help="sentence encoder for the judge-gated rows (omit to skip them)")
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--index", default="products")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()

    qrels, train = training_queries()
    pairs = [(r["query"], r["rewrite"]) for r in map(json.loads, args.rows.read_text().splitlines())]
    if any(q not in train for q, _ in pairs):
        parser.error("--rows holds queries outside the training folds")
    client = OpenSearch(args.url, timeout=120)
    mirror = DEFAULT_BASELINE.model_copy(update={"operator": "and"})

    def run(bodies: dict) -> dict:
        return search_many(client, args.index, bodies, depth=10, batch_size=20)

    base = run({q: DEFAULT_BASELINE.build(q) for q in train})
    base_ndcg = {q: ndcg_at_k(base[q].ids[:10], qrels[q]) for q in train}
    mean_base = float(np.mean(list(base_ndcg.values())))
    judge = None
    if args.encoder:
        encoder = SentenceEncoder(args.encoder)
        judge = (title_embeddings(encoder, TrainingCatalog.icecat().products, default_cache_dir()), dict(zip(train, encoder.encode(train))))

    def bodies(kind: str, window: int, weight: float) -> dict:
        if kind == "expand":
            return {p: {"query": {"bool": {"should": [DEFAULT_BASELINE.clause(p[0]), mirror.clause(p[1], boost=weight)]}}} for p in pairs}
        return {p: {"query": DEFAULT_BASELINE.clause(p[0]), "rescore": {"window_size": window, "query": {
            "rescore_query": mirror.clause(p[1]), "query_weight": 1.0, "rescore_query_weight": weight}}} for p in pairs}

    report_rows = []
    for weight in WEIGHTS:
        for kind, window in [("expand", 0)] + [("rescore", k) for k in WINDOWS]:
            results = run(bodies(kind, window, weight))
            rows = [{"query": q, "rewrite": c, "gain": ndcg_at_k(results[(q, c)].ids[:10], qrels[q]) - base_ndcg[q]} for q, c in pairs]
            by_query = collections.defaultdict(list)
            for row in rows:
                by_query[row["query"]].append(row["gain"])
            gains = np.array([r["gain"] for r in rows])
            oracle = float(np.mean([max([0.0, *by_query.get(q, [])]) for q in train]))
            entry = {"merge": kind if kind == "expand" else f"rescore top {window}", "weight": weight,
                     "help": int((gains > HARM).sum()), "hurt": int((gains < -HARM).sum()),
                     "mean_gain_per_candidate": round(float(gains.mean()), 4), "oracle_x_baseline": round(1 + oracle / mean_base, 4)}
            if judge:
                titles, query_vecs = judge
                for row in rows:
                    q = row["query"]
                    row["judge_delta"] = (judged_similarity(query_vecs[q], results[(q, row["rewrite"])].ids, titles)
                                          - judged_similarity(query_vecs[q], base[q].ids, titles))
                entry["judge_gate"] = [{k: v for k, v in judge_gate(rows, train, t).items() if k != "served_rewrites"}
                                       for t in JUDGE_THRESHOLDS]
                for gate in entry["judge_gate"]:
                    gate["x_baseline"] = round(1 + gate["mean_gain"] / mean_base, 4)
            report_rows.append(entry)
    report = {
        "queries": len(train), "candidates": len(pairs), "baseline_ndcg@10": round(mean_base, 4), "harm_threshold": HARM,
        "merges": report_rows,
        "method": {"machine": platform.platform(), "python": platform.python_version(),
                   "opensearch": client.info()["version"]["number"], "queries": "judged training folds (fold 0 never searched)",
                   "seconds": round(time.perf_counter() - started, 1)},
    }
    emit(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
