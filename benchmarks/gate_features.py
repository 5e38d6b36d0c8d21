"""Could evidence from the index tell helpful rewrites from harmful ones better than the tagger? (a measurement)

Why: the shipped tagger orders the trainer's candidates by their real judged outcome at a rank AUC of
about 0.58 (``docs/eval/headroom.md`` section 3), so the gate serves almost nothing. A serving-time
alternative would be a *verified* gate: run each rewrite against the index (one ``msearch``) and
keep it only if what it retrieves looks like what the query retrieves. Before anyone builds that,
this script measures whether label-free retrieval features separate the candidates at all, on the
training folds of the judged queries only (fold 0, the validation fold, is never searched).

For every training query, the label-free candidates of ``trainer.candidates.CandidateGenerator``
(the same ones the training labels are measured on) are merged with the baseline as
``bool.should[baseline, text mirror^boost]`` (what the plugin sends). Gain is the nDCG@10 change;
help / hurt is a change beyond +-0.05. Features, all computable at serving time without labels:

* ``type_overlap``: overlap of the product-type distributions (``trainer.facets``) of the baseline's
  top 30 and the rewrite's own top 30 (1 = the same types in the same shares);
* ``result_overlap``: share of the baseline's top 30 that the rewrite alone also retrieves;
* ``churn``: share of the baseline's top 10 the merged query replaces;
* ``rewrite_results``: how many results the rewrite alone returns (up to 30);
* ``query_words_kept``: share of the query's words the rewrite keeps;
* ``log_hits_baseline`` / ``log_hits_rewrite``: total hits, log1p;
* the tagger's four probabilities (``--tag-model``; '' skips them).

Report: each feature's rank AUC (help over hurt), and a logistic regression over all of them scored
by grouped 5-fold cross-validation (a query's candidates stay in one fold), so that a combination is
judged on queries it was not fitted on.

    .venv/bin/python benchmarks/gate_features.py --json docs/eval/gate_features.json
"""

from __future__ import annotations

import argparse
import collections
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_candidates import candidate_generator, emit, training_queries  # noqa: E402

HARM = 0.05
DEPTH = 30


def type_shares(ids, facets) -> dict[str, float]:
    """The product-type distribution of a result list (untyped products left out)."""
    types = collections.Counter(f.product_type for f in (facets.get(d) for d in ids) if f and f.product_type)
    total = sum(types.values()) or 1
    return {t: n / total for t, n in types.items()}


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1.0, steps: int = 3000, rate: float = 0.1) -> tuple[np.ndarray, float]:
    """Class-balanced L2 logistic regression by gradient descent (a few features, ~100 rows: no library needed)."""
    w, b = np.zeros(x.shape[1]), 0.0
    weight = np.where(y > 0, (len(y) - y.sum()) / max(y.sum(), 1.0), 1.0)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ w + b)))
        grad = (p - y) * weight
        w -= rate * (x.T @ grad / len(y) + l2 * w / len(y))
        b -= rate * grad.mean()
    return w, b


def grouped_cv_scores(x: np.ndarray, y: np.ndarray, groups: list[str], folds: int = 5) -> np.ndarray:
    """Out-of-fold probabilities, a group (query) never split across folds."""
    order = {g: i % folds for i, g in enumerate(sorted(set(groups)))}
    fold = np.array([order[g] for g in groups])
    out = np.zeros(len(y))
    for k in range(folds):
        train, test = fold != k, fold == k
        mean, std = x[train].mean(0), x[train].std(0) + 1e-9
        w, b = fit_logistic((x[train] - mean) / std, y[train])
        out[test] = 1.0 / (1.0 + np.exp(-(((x[test] - mean) / std) @ w + b)))
    return out


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch
    from tqdm import tqdm

    from qrw.eval.metrics import ndcg_at_k
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.runner import search_many
    from qrw.trainer.catalog import TrainingCatalog
    from qrw.trainer.evaluate import rank_auc

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--index", default="products", help="alias of the baseline's index (`qrw sandbox` / `qrw index`)")
    parser.add_argument("--boost", type=float, default=0.5, help="boost of the rewrite clause")
    parser.add_argument("--tag-model", default="default", help="rewriter whose tag probabilities join the features ('' to skip)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()

    qrels, train = training_queries()
    catalog = TrainingCatalog.icecat()
    facets = catalog.facets()
    generator = candidate_generator(catalog)
    pairs = [(q, c) for q in tqdm(train, desc="proposing candidates", unit="query") for c in generator.propose(q)]

    client = OpenSearch(args.url, timeout=120)
    mirror = DEFAULT_BASELINE.model_copy(update={"operator": "and"})

    def run(bodies: dict) -> dict:
        return search_many(client, args.index, bodies, depth=DEPTH, batch_size=20)

    base = run({q: DEFAULT_BASELINE.build(q) for q in train})
    merged = run({p: {"query": {"bool": {"should": [DEFAULT_BASELINE.clause(p[0]), mirror.clause(p[1], boost=args.boost)]}}} for p in pairs})
    alone = run({p: {"query": mirror.clause(p[1])} for p in pairs})

    rows = []
    for q, c in pairs:
        b, m, a = base[q], merged[(q, c)], alone[(q, c)]
        shares_b, shares_a = type_shares(b.ids, facets), type_shares(a.ids, facets)
        rows.append({
            "query": q, "rewrite": c,
            "gain": ndcg_at_k(m.ids[:10], qrels[q]) - ndcg_at_k(b.ids[:10], qrels[q]),
            "type_overlap": sum(min(share, shares_a.get(t, 0.0)) for t, share in shares_b.items()),
            "result_overlap": len(set(b.ids) & set(a.ids)) / DEPTH,
            "churn": 1.0 - len(set(b.ids[:10]) & set(m.ids[:10])) / 10,
            "rewrite_results": float(len(a.ids)),
            "query_words_kept": len(set(q.split()) & set(c.split())) / len(q.split()),
            "log_hits_baseline": math.log1p(b.total), "log_hits_rewrite": math.log1p(a.total),
        })
    if args.tag_model:
        from qrw.plugin import model_store
        from qrw.plugin.runtime import load_model

        model = load_model(model_store.resolve(args.tag_model))
        for row, probabilities in zip(rows, model.tag([(r["query"], r["rewrite"]) for r in rows])):
            row.update({f"p_{tag}": p for tag, p in probabilities.items()})

    decided = [r for r in rows if abs(r["gain"]) > HARM]
    helps = [r for r in decided if r["gain"] > 0]
    hurts = [r for r in decided if r["gain"] < 0]
    features = [k for k in rows[0] if k not in ("query", "rewrite", "gain")]
    single = {f: rank_auc([r[f] for r in helps], [r[f] for r in hurts]) for f in features}
    x = np.array([[r[f] for f in features] for r in decided])
    y = np.array([1.0 if r["gain"] > 0 else 0.0 for r in decided])
    oof = grouped_cv_scores(x, y, [r["query"] for r in decided])
    report = {
        "train_queries": len(train), "candidates": len(rows), "help": len(helps), "hurt": len(hurts),
        "clause": f"text_mirror^{args.boost:g}",
        "auc_help_over_hurt": {f: round(v, 3) for f, v in sorted(single.items(), key=lambda kv: -kv[1])},
        "logistic_all_features_grouped_cv_auc": round(rank_auc(list(oof[y > 0]), list(oof[y == 0])), 3),
        "method": {
            "machine": platform.platform(), "python": platform.python_version(),
            "opensearch": client.info()["version"]["number"], "tag_model": args.tag_model or None,
            "queries": "judged training folds (fold 0 = validation, never searched)", "harm_threshold": HARM,
            "cv": "5 folds grouped by query, features standardised on the training part", "seconds": round(time.perf_counter() - started, 1)},
    }
    emit(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
