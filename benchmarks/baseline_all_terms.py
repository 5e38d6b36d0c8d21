"""Would the strongest baseline be stronger with an all-terms boost? (a measurement, not adopted yet)

Why: in development runs of the v2 evaluation, ungated "rewrites" that copied the query (merged with
``operator: and``) helped some queries: a clause that rewards products holding *every* query term, which the shipped baseline (``DEFAULT_BASELINE``, one ``most_fields`` clause with
``operator: or``) lacks. That is a baseline technique, not rewriting, so it is measured here as a
baseline variant: ``bool.should[DEFAULT_BASELINE clause, the same clause with operator and, boost w]``.

Method: the judged development queries of the training folds (``qrw.eval.folds``, fold 0 is
validation), boosts w in ``--boosts``; cross-validation over the training folds as ``qrw baselines``
does (each fold scored with the boost best on the others); the validation fold is scored once, for
the report only. Needs the index of ``qrw sandbox`` / ``qrw index`` at ``--url``.

    .venv/bin/python benchmarks/baseline_all_terms.py --json docs/eval/baseline_all_terms.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch

    from qrw.eval.folds import fold_of
    from qrw.eval.judgments import load_judgments
    from qrw.eval.metrics import ndcg_at_k
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.catalog import default_data_dir
    from qrw.search.runner import search_many

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--index", default="products")
    parser.add_argument("--boosts", default="0.1,0.2,0.3,0.5,1.0")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    qrels = load_judgments(default_data_dir() / "judgments" / "judgments.csv")
    train = [q for q in qrels if fold_of(q) != 0]
    valid = [q for q in qrels if fold_of(q) == 0]
    client = OpenSearch(args.url)
    boosts = [0.0] + [float(b) for b in args.boosts.split(",")]
    all_terms = DEFAULT_BASELINE.model_copy(update={"operator": "and"})

    def body(query: str, boost: float) -> dict:
        if not boost:
            return DEFAULT_BASELINE.build(query)
        return {"query": {"bool": {"should": [DEFAULT_BASELINE.clause(query), all_terms.clause(query, boost=boost)]}}}

    scores = {}
    for boost in boosts:
        ranked = search_many(client, args.index, {q: body(q, boost) for q in train + valid}, depth=10, batch_size=20)
        scores[boost] = {q: ndcg_at_k(ranked[q].ids, qrels[q]) for q in train + valid}

    def mean(boost: float, queries) -> float:
        return statistics.fmean(scores[boost][q] for q in queries)

    folds, held_out = [], {}
    for fold in sorted({fold_of(q) for q in train}):
        inner = [q for q in train if fold_of(q) != fold]
        outer = [q for q in train if fold_of(q) == fold]
        best = max(boosts, key=lambda b: (round(mean(b, inner), 6), -b))
        folds.append({"fold": fold, "picked_boost": best, "outer_ndcg@10": mean(best, outer), "outer_baseline": mean(0.0, outer)})
        held_out.update({q: scores[best][q] for q in outer})
    chosen = max(boosts, key=lambda b: (round(mean(b, train), 6), -b))
    report = {
        "method": "bool.should[DEFAULT_BASELINE, the same clause with operator and ^boost]; CV over the training folds "
                  "(fold 0 = validation, scored for the report only)",
        "train_queries": len(train), "valid_queries": len(valid),
        "train_mean_by_boost": {str(b): mean(b, train) for b in boosts},
        "train_cv_ndcg@10": statistics.fmean(held_out[q] for q in train), "train_baseline_ndcg@10": mean(0.0, train),
        "folds": folds, "chosen_boost": chosen,
        "valid_ndcg@10": {"baseline": mean(0.0, valid), f"all_terms^{chosen:g}": mean(chosen, valid)},
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
