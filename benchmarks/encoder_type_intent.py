"""A product-type bridge chosen by a sentence encoder: lift the type of the catalog titles nearest the query (a measurement).

Why: the product's headline case is ``laptop`` against titles that say "Notebook". The strongest
baseline scores 0 on ``laptop``, ``laptops`` and ``gaming laptop``: the catalog's notebooks never say
"laptop", and the products that do are laptop *accessories*, which also say "notebook" ("Laptop Case
... notebook case"), so a text rewrite `notebook` lifts more accessories (``docs/eval/headroom.md``
§2). A clause on the product *type* lifts notebooks and not notebook cases, but §8 found that the type
a query's own words name is often the wrong one (`sd card` -> card). Here the type comes from a
sentence encoder instead: the most frequent ``trainer.facets`` type among the ``--neighbours``
catalog titles nearest the query (cosine, all-MiniLM-L6-v2 as in ``semantic_judge.py``), with its
share of those titles as the confidence. Nothing here reads a judgment to choose the type.

System: ``bool.should[baseline, constant_score(term product_type.raw = T)^w]`` (with ``--within-matches``:
``bool.must[baseline] + should[lift]``, which reorders only the products the query matches) when the share is at
least ``theta`` and the baseline's own top 10 holds at most ``phi`` of type T (``--phis``; the lift
should act only where the baseline misses the intended type), else the baseline. The clause may add
hits (the notebooks do not match ``laptop`` at all), so the median hit count is reported beside the
quality.

Choice: per outer training fold, (theta, phi, w) by mean nDCG@10 on the other three training folds
(ties: serve less, then the smaller w); the validation fold (fold 0) is never used to choose and is
scored once with the all-training choice (``--validation``), for the report. Side index as in
``rewrite_clause_targets.py`` (the baseline index plus ``product_type``), deleted on exit.

    .venv/bin/python benchmarks/encoder_type_intent.py --encoder ENCODER_DIR --validation --json docs/eval/encoder_type_intent.json
"""
from __future__ import annotations

import argparse
import collections
import itertools
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rewrite_clause_targets import HARM, add_side_index_arguments, typed_side_index
from training_candidates import emit, training_queries

THETAS = (0.5, 0.6, 0.7, 0.8, 0.9)
WEIGHTS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
OFF = (None, 1.0, 0.0)


def type_votes(encoder, catalog, facets, queries: list[str], neighbours: int, cache_dir) -> dict[str, tuple[str, float]]:
    """Per query: (the most frequent product type among its nearest titles, that type's share of them)."""
    from qrw.trainer.encoder_bridge import encode_cached

    titles = encode_cached(encoder, [p.title for p in catalog.products], name="titles", cache_dir=cache_dir)
    types = [(facets.get(p.id).product_type if facets.get(p.id) else "") for p in catalog.products]
    votes = {}
    for query, vec in zip(queries, encoder.encode(queries)):
        nearest = np.argsort(-(titles @ vec))[:neighbours]
        top = collections.Counter(types[i] for i in nearest if types[i]).most_common(1)
        votes[query] = (top[0][0], top[0][1] / neighbours) if top else ("", 0.0)
    return votes


def main(argv: list[str] | None = None) -> int:
    from qrw.trainer.catalog import TrainingCatalog
    from qrw.trainer.encoder_bridge import SentenceEncoder, default_cache_dir

    from qrw.eval.folds import fold_of
    from qrw.eval.metrics import condensed_ndcg_at_k, judged_at_k, ndcg_at_k
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.runner import search_many

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_side_index_arguments(parser)
    parser.add_argument("--encoder", type=Path, required=True, help="local sentence-transformers checkpoint")
    parser.add_argument("--neighbours", type=int, default=30)
    parser.add_argument("--phis", default="1.0",
                        help="comma-separated: serve only when the baseline's own top 10 holds at most this share of the "
                             "type (1.0: no condition)")
    parser.add_argument("--within-matches", action="store_true",
                        help="bool.must[baseline] + should[lift]: lift only products the query matches (adds no hits)")
    parser.add_argument("--validation", action="store_true", help="also score fold 0 once with the training folds' choice")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()

    qrels, train = training_queries()
    valid = [q for q in qrels if fold_of(q) == 0] if args.validation else []
    catalog = TrainingCatalog.icecat()
    facets = catalog.facets()
    encoder = SentenceEncoder(args.encoder)
    votes = type_votes(encoder, catalog, facets.by_id, train + valid, args.neighbours, default_cache_dir())
    phis = [float(x) for x in args.phis.split(",")]
    settings = [OFF, *itertools.product(THETAS, phis, WEIGHTS)]
    type_of = {pid: (f.product_type if f else "") for pid, f in facets.by_id.items()}
    base_share: dict[str, float] = {}
    rankings: dict = {}

    with typed_side_index(args, catalog, facets, qrels) as (client, _ndcg):
        def body(query: str, weight: float) -> dict:
            ptype = votes[query][0]
            if weight == 0 or not ptype:
                return DEFAULT_BASELINE.build(query)
            lift = {"constant_score": {"filter": {"term": {"product_type.raw": ptype}}, "boost": weight}}
            if args.within_matches:
                return {"query": {"bool": {"must": [DEFAULT_BASELINE.clause(query)], "should": [lift]}}}
            return {"query": {"bool": {"should": [DEFAULT_BASELINE.clause(query), lift]}}}

        def served(query: str, setting) -> float:
            theta, phi, weight = setting
            if theta is None or votes[query][1] < theta or base_share[query] > phi:
                return 0.0
            return weight

        def score_all(queries: list[str], weights) -> tuple[dict, dict]:
            bodies = {(q, w): body(q, w) for q in queries for w in {0.0, *weights}}
            ranked = search_many(client, args.index_name, bodies, depth=100, batch_size=20)
            rankings.update(ranked)
            for q in queries:
                top = ranked[(q, 0.0)].ids[:10]
                base_share[q] = sum(type_of.get(d) == votes[q][0] for d in top) / max(1, len(top))
            return ({key: ndcg_at_k(ranked[key].ids, qrels[key[0]]) for key in bodies},
                    {key: ranked[key].total for key in bodies})

        scores, hits = score_all(train, WEIGHTS)

        def mean(queries, setting) -> float:
            return statistics.fmean(scores[(q, served(q, setting))] for q in queries)

        def pick(queries):
            return max(settings, key=lambda s: (round(mean(queries, s), 6), s is OFF, -s[2], s[1]))

        folds, deltas = [], {}
        for outer in sorted({fold_of(q) for q in train}):
            inner = [q for q in train if fold_of(q) != outer]
            held = [q for q in train if fold_of(q) == outer]
            chosen = pick(inner)
            folds.append({"fold": outer, "picked": dict(zip(("theta", "phi", "weight"), chosen)), "queries": len(held),
                          "outer_ndcg@10": mean(held, chosen), "outer_baseline": mean(held, OFF)})
            deltas.update({q: scores[(q, served(q, chosen))] - scores[(q, 0.0)] for q in held})
        chosen = pick(train)
        grid = {f"theta={t},phi={f:g},w={w:g}": round(mean(train, (t, f, w)), 4) for t, f, w in settings if t is not None}
        report = {
            "train_queries": len(train), "neighbours": args.neighbours, "type_coverage": round(facets.coverage(), 4),
            "baseline_ndcg@10": mean(train, OFF), "ndcg@10_by_setting": grid,
            "cv_ndcg@10": statistics.fmean(scores[(q, 0.0)] + deltas[q] for q in train),
            "cv_gain": statistics.fmean(deltas.values()),
            "cv_win": sum(d > HARM for d in deltas.values()), "cv_harm": sum(d < -HARM for d in deltas.values()),
            "folds": folds,
            "chosen_all_training": dict(zip(("theta", "phi", "weight"), chosen)),
            "cv_changed": sorted(([q, votes[q][0], round(votes[q][1], 2), base_share[q], round(d, 3)] for q, d in deltas.items() if abs(d) > 1e-9),
                                 key=lambda row: row[-1]),
            "votes_train": {q: [votes[q][0], round(votes[q][1], 2), base_share[q]] for q in train},
        }
        def served_rows(queries: list[str], setting) -> list[list]:
            """The queries a setting serves: the type, its share, the baseline's share of it, and the change in
            nDCG@10, in condensed nDCG@10 (unjudged products left out) and in judged@10: a lift that brings
            products of the right type nobody judged shows as a loss in nDCG@10 and not in condensed nDCG@10."""
            rows = []
            for q in queries:
                weight = served(q, setting)
                if weight:
                    before, after = rankings[(q, 0.0)].ids, rankings[(q, weight)].ids
                    rows.append([q, votes[q][0], round(votes[q][1], 2), base_share[q],
                                 round(ndcg_at_k(after, qrels[q]) - ndcg_at_k(before, qrels[q]), 3),
                                 round(condensed_ndcg_at_k(after, qrels[q]) - condensed_ndcg_at_k(before, qrels[q]), 3),
                                 round(judged_at_k(after, qrels[q]) - judged_at_k(before, qrels[q]), 1)])
            return sorted(rows, key=lambda row: row[4])

        report["served_train_chosen"] = {
            "columns": ["query", "type", "share", "baseline_share", "d_ndcg@10", "d_condensed_ndcg@10", "d_judged@10"],
            "rows": served_rows(train, chosen)}
        report["median_hits"] = {
            "baseline": statistics.median(hits[(q, 0.0)] for q in train),
            "chosen": statistics.median(hits[(q, served(q, chosen))] for q in train)}
        if valid:
            weights = [chosen[2]]
            vs, vh = score_all(valid, weights)
            report["validation"] = {
                "chosen": dict(zip(("theta", "phi", "weight"), chosen)), "queries": len(valid),
                "baseline_ndcg@10": statistics.fmean(vs[(q, 0.0)] for q in valid),
                "ndcg@10": statistics.fmean(vs[(q, served(q, chosen))] for q in valid),
                "harm": sum(vs[(q, served(q, chosen))] - vs[(q, 0.0)] < -HARM for q in valid),
                "win": sum(vs[(q, served(q, chosen))] - vs[(q, 0.0)] > HARM for q in valid),
                "median_hits": {"baseline": statistics.median(vh[(q, 0.0)] for q in valid),
                                "chosen": statistics.median(vh[(q, served(q, chosen))] for q in valid)},
                "served": served_rows(valid, chosen)}
        report["method"] = {
            "machine": platform.platform(), "python": platform.python_version(),
            "opensearch": client.info()["version"]["number"], "encoder": str(args.encoder), "harm_threshold": HARM,
            "lift": "within the baseline's matches (must + should)" if args.within_matches else "should[baseline, lift]",
            "choice": "(theta, phi, w) per outer fold by mean nDCG@10 on the other three training folds; fold 0 never used to choose",
            "seconds": round(time.perf_counter() - started, 1)}
    emit(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
