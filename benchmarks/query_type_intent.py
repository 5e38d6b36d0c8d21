"""Does lifting the product type a query names help? (a measurement, training folds only)

Why: the baseline's commonest failure on head queries is accessories above the product: for a query
that *names* a kind of product (``gaming mouse``, ``laptop bag``) every product that mentions the
words matches, and bags, mounts and cables that say "for camera" can outrank cameras. The catalog's
own product types (read from titles by ``trainer.facets``, no labels) give a label-free signal: the
longest known type the query ends with is what the user asks for (English head-final noun phrases:
``gaming mouse`` asks for a mouse, ``mouse pad`` for a pad). This script measures, before anyone
builds it, a clause that lifts products of that type *among the baseline's own hits*:
``bool.must[baseline] + should[constant_score(term product_type.raw = T) ^ w]``, so the hit count is
the baseline's and only the order changes.

Weights are chosen per outer fold by cross-validation over the four training folds (the validation
fold, fold 0, is never searched for the choice; ``--validation`` scores it once with the weight the
training folds pick, for the report). Also reported: the variant that takes the longest type
contained anywhere in the query, and the share of queries that name a type at all.

    .venv/bin/python benchmarks/query_type_intent.py --json docs/eval/query_type_intent.json
"""

from __future__ import annotations

import argparse
import collections
import collections.abc
import platform
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rewrite_clause_targets import add_side_index_arguments, typed_side_index  # noqa: E402
from training_candidates import emit, training_queries  # noqa: E402

HARM = 0.05


def _words(text: str) -> list[str]:
    return re.sub(r"[^\w\- ]", " ", text.casefold()).split()


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def named_type(query: str, types: collections.abc.Mapping[str, int], *, anywhere: bool = False) -> str:
    """The longest catalog type (then the commonest) the query ends with (``anywhere``: contains),
    plural/singular folded; '' if none. ``types``: type -> product count (``CatalogFacets.types``)."""
    words = [_singular(w) for w in _words(query)]
    best, best_key = "", (0, 0)
    for known, count in types.items():
        parts = [_singular(w) for w in known.split()]
        n = len(parts)
        if n > len(words):
            continue
        spans = range(len(words) - n + 1) if anywhere else [len(words) - n]
        if any(words[i:i + n] == parts for i in spans) and (n, count) > best_key:
            best, best_key = known, (n, count)
    return best


def main(argv: list[str] | None = None) -> int:
    from qrw.trainer.catalog import TrainingCatalog

    from qrw.eval.folds import fold_of
    from qrw.search.baseline import DEFAULT_BASELINE

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_side_index_arguments(parser)
    parser.add_argument("--weights", default="0.5,1,2,4,8")
    parser.add_argument("--validation", action="store_true", help="also score fold 0 once with the training folds' choice")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    weights = [float(w) for w in args.weights.split(",")]

    qrels, train = training_queries()
    valid = [q for q in qrels if fold_of(q) == 0] if args.validation else []
    catalog = TrainingCatalog.icecat()
    facets = catalog.facets()
    with typed_side_index(args, catalog, facets, qrels) as (client, ndcg):
        def body(query: str, ptype: str, weight: float) -> dict:
            if not ptype or weight == 0:
                return DEFAULT_BASELINE.build(query)
            lift = {"constant_score": {"filter": {"term": {"product_type.raw": ptype}}, "boost": weight}}
            return {"query": {"bool": {"must": [DEFAULT_BASELINE.clause(query)], "should": [lift]}}}

        report: dict = {"train_queries": len(train), "type_coverage": round(facets.coverage(), 4), "variants": {}}
        for variant, anywhere in (("ends_with", False), ("contains", True)):
            queries = train + valid
            ptypes = {q: named_type(q, facets.types, anywhere=anywhere) for q in queries}
            scores = ndcg({(q, w): body(q, ptypes[q], w) for q in train for w in [0.0, *weights]})
            per_weight = {w: statistics.fmean(scores[(q, w)] for q in train) for w in [0.0, *weights]}
            folds = []
            for outer in sorted({fold_of(q) for q in train}):
                inner = [q for q in train if fold_of(q) != outer]
                held = [q for q in train if fold_of(q) == outer]
                pick = max([0.0, *weights], key=lambda w: (round(statistics.fmean(scores[(q, w)] for q in inner), 6), -w))
                folds.append({"fold": outer, "picked_weight": pick, "queries": len(held),
                              "outer_ndcg@10": statistics.fmean(scores[(q, pick)] for q in held),
                              "outer_baseline": statistics.fmean(scores[(q, 0.0)] for q in held),
                              "deltas": {q: scores[(q, pick)] - scores[(q, 0.0)] for q in held}})
            deltas = {q: d for f in folds for q, d in f["deltas"].items()}
            chosen = max([0.0, *weights], key=lambda w: (round(per_weight[w], 6), -w))
            entry = {
                "queries_naming_a_type": sum(bool(ptypes[q]) for q in train),
                "ndcg@10_by_weight": per_weight,
                "cv_ndcg@10": statistics.fmean(scores[(q, 0.0)] + deltas[q] for q in train),
                "baseline_ndcg@10": per_weight[0.0],
                "cv_gain": statistics.fmean(deltas.values()),
                "cv_win": sum(d > HARM for d in deltas.values()), "cv_harm": sum(d < -HARM for d in deltas.values()),
                "folds": [{k: v for k, v in f.items() if k != "deltas"} for f in folds],
                "chosen_weight_all_training": chosen,
                "changed_queries": sorted(([q, ptypes[q], round(d, 3)] for q, d in deltas.items() if abs(d) > 1e-9),
                                          key=lambda row: row[2]),
            }
            if valid:
                vs = ndcg({(q, w): body(q, ptypes[q], w) for q in valid for w in (0.0, chosen)})
                entry["validation"] = {
                    "weight": chosen, "queries": len(valid),
                    "baseline_ndcg@10": statistics.fmean(vs[(q, 0.0)] for q in valid),
                    "ndcg@10": statistics.fmean(vs[(q, chosen)] for q in valid),
                    "changed": sorted(([q, ptypes[q], round(vs[(q, chosen)] - vs[(q, 0.0)], 3)] for q in valid
                                       if abs(vs[(q, chosen)] - vs[(q, 0.0)]) > 1e-9), key=lambda row: row[2])}
            report["variants"][variant] = entry
        report["method"] = {
            "machine": platform.platform(), "python": platform.python_version(),
            "opensearch": client.info()["version"]["number"], "harm_threshold": HARM,
            "choice": "weight per outer fold by mean nDCG@10 on the other three training folds; fold 0 never used to choose",
            "seconds": round(time.perf_counter() - started, 1)}
    emit(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
