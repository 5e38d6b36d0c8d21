"""``qrw baselines``: every baseline variant side by side, and field weights chosen by cross-validation.

Why: rewriting only counts if it beats the strongest plain lexical query. "Strongest" must be
decided without looking at the validation queries, so weights are chosen by K-fold
cross-validation *inside the training folds*: for each training fold, the grid point that scores
best on the other training folds is scored on it; the mean over folds estimates the tuned
family's quality. The tuned family replaces the best fixed variant only when that estimate beats
the fixed variant's (scored on the same folds) by more than ``min_gain``: on ~75 queries a smaller
difference is noise, and the untuned form then wins the tie. The validation fold is scored last,
for the report only.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
from collections.abc import Mapping, Sequence

from opensearchpy import OpenSearch
from tqdm import tqdm

from qrw.eval.folds import fold_of
from qrw.eval.judgments import Qrels
from qrw.eval.metrics import mean_metrics, query_metrics
from qrw.search.baseline import CATCH_ALL, CATCH_ALL_JOINED, STEM_SUFFIX, VARIANTS, BaselineSpec
from qrw.search.runner import search_many

WEIGHT_GRID: dict[str, tuple[float, ...]] = {
    f"title{STEM_SUFFIX}": (0.0, 0.5, 1.0, 2.0),
    f"supplier{STEM_SUFFIX}": (0.0, 0.5, 1.0),
    f"name{STEM_SUFFIX}": (0.0, 0.5, 1.0),
    f"short_description{STEM_SUFFIX}": (0.0, 0.5),
    CATCH_ALL_JOINED: (0.0, 0.5, 1.0),
}
"""Boosts tried for each field added beside the stemmed catch-all field (0 = field left out): the
stemmed fields, and the catch-all's joined-pairs sub-field (``smart watch`` meets ``smartwatch``)."""


def weight_grid(grid: Mapping[str, Sequence[float]] = WEIGHT_GRID) -> list[BaselineSpec]:
    """Every ``multi_match`` (most_fields and best_fields) of ``all_text`` plus boosted fields."""
    specs = []
    names = list(grid)
    for kind in ("most_fields", "best_fields"):
        for weights in itertools.product(*(grid[n] for n in names)):
            extra = [f"{n}^{w:g}" for n, w in zip(names, weights) if w > 0]
            if not extra:
                continue  # the catch-all alone is the fixed variant catch_all_stemmed
            specs.append(BaselineSpec(
                name="tuned:" + kind + ":" + ",".join(extra), fields=(CATCH_ALL, *extra), type=kind,
                tie_breaker=0.3 if kind == "best_fields" else None,
                description=f"catch-all + {', '.join(extra)} ({kind}), weights chosen by cross-validation"))
    return specs


@dataclasses.dataclass
class Scored:
    spec: BaselineSpec
    ndcg: dict[str, float]
    rows: dict[str, dict]
    totals: dict[str, int]


def _score(client: OpenSearch, index: str, qrels: Qrels, queries: Sequence[str], spec: BaselineSpec, url: str) -> Scored:
    rankings = search_many(client, index, {q: spec.build(q) for q in queries}, depth=100, url=url)
    rows = {q: query_metrics(rankings[q].ids, qrels[q]) for q in queries}
    return Scored(spec, {q: rows[q]["ndcg@10"] for q in queries}, rows, {q: rankings[q].total for q in queries})


def _mean(values: Mapping[str, float], queries: Sequence[str]) -> float:
    return sum(values[q] for q in queries) / len(queries) if queries else 0.0


def select_baseline(
    client: OpenSearch,
    index: str,
    qrels: Qrels,
    *,
    folds: int = 5,
    valid_fold: int = 0,
    grid: Sequence[BaselineSpec] | None = None,
    min_gain: float = 0.005,
    url: str = "",
    progress: bool = True,
) -> dict:
    """Score every fixed variant and the tuned family; return the report (the chosen spec under ``chosen``)."""
    train = [q for q in qrels if fold_of(q, folds) != valid_fold]
    valid = [q for q in qrels if fold_of(q, folds) == valid_fold]
    train_folds = sorted({fold_of(q, folds) for q in train})
    grid = weight_grid() if grid is None else list(grid)
    fixed = {name: _score(client, index, qrels, train, spec, url) for name, spec in VARIANTS.items()}
    tuned = [_score(client, index, qrels, train, spec, url)
             for spec in tqdm(grid, desc="weight grid", unit="spec", disable=not progress)]

    def cv(candidates: Sequence[Scored]) -> tuple[float, list[dict]]:
        """Mean over training folds of the score, on that fold, of the best candidate on the others."""
        per_fold = []
        for f in train_folds:
            inner = [q for q in train if fold_of(q, folds) != f]
            outer = [q for q in train if fold_of(q, folds) == f]
            best = max(candidates, key=lambda s: (round(_mean(s.ndcg, inner), 6), -len(s.spec.fields)))
            per_fold.append({"fold": f, "picked": best.spec.name, "inner": _mean(best.ndcg, inner),
                             "outer": _mean(best.ndcg, outer), "queries": len(outer)})
        return statistics.fmean(p["outer"] for p in per_fold), per_fold

    fixed_cv = {name: cv([scored])[0] for name, scored in fixed.items()}
    best_fixed = max(fixed_cv, key=lambda name: fixed_cv[name])
    tuned_cv, tuned_folds = cv(tuned) if tuned else (float("-inf"), [])
    tuned_best = max(tuned, key=lambda s: (round(_mean(s.ndcg, train), 6), -len(s.spec.fields))) if tuned else None
    use_tuned = tuned_best is not None and tuned_cv > fixed_cv[best_fixed] + min_gain
    chosen = tuned_best.spec if use_tuned else VARIANTS[best_fixed]

    rows = []
    candidates = {**{name: spec for name, spec in VARIANTS.items()}, **({chosen.name: chosen} if use_tuned else {})}
    for name, spec in candidates.items():
        on_train = fixed.get(name) or tuned_best
        on_valid = _score(client, index, qrels, valid, spec, url) if valid else None
        rows.append({
            "name": name, "description": spec.description, "fields": list(spec.fields), "type": spec.type,
            "train_cv_ndcg@10": tuned_cv if name == chosen.name and use_tuned else fixed_cv[name],
            "train_ndcg@10": _mean(on_train.ndcg, train),
            "valid": None if on_valid is None else {
                **mean_metrics(list(on_valid.rows.values())),
                "median_total_hits": statistics.median(on_valid.totals.values()),
            },
            "chosen": name == chosen.name,
        })
    return {
        "method": (f"{len(train_folds)}-fold cross-validation inside the training folds (fold {valid_fold} of {folds} "
                   f"held out); tuned family adopted only if its CV nDCG@10 beats the best fixed variant by > {min_gain}"),
        "train_queries": len(train), "valid_queries": len(valid),
        "grid_size": len(grid), "tuned_cv_ndcg@10": tuned_cv, "tuned_folds": tuned_folds,
        "best_fixed": best_fixed, "best_fixed_cv_ndcg@10": fixed_cv[best_fixed],
        "chosen": chosen.model_dump(), "variants": rows,
    }


def format_report(report: Mapping) -> str:
    """A markdown table of every variant: training-fold CV figure, then validation-fold figures."""
    lines = [
        f"Method: {report['method']}. Training queries {report['train_queries']}, validation queries {report['valid_queries']}, "
        f"weight grid {report['grid_size']} specs.",
        "",
        "| baseline | fields | train CV nDCG@10 | valid nDCG@10 | valid recall@100 | valid P@10 | valid median hits | chosen |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["variants"]:
        valid = row["valid"] or {}
        cell = (lambda key, fmt="{:.4f}": fmt.format(valid[key]) if key in valid else "–")
        lines.append(
            f"| {row['name']} | {', '.join(row['fields'])} ({row['type']}) | {row['train_cv_ndcg@10']:.4f} | "
            f"{cell('ndcg@10')} | {cell('recall@100')} | {cell('precision@10')} | {cell('median_total_hits', '{:.0f}')} | "
            f"{'**yes**' if row['chosen'] else ''} |"
        )
    lines += ["", "Tuned family, per training fold (picked on the other training folds, scored on this one):", ""]
    lines += [f"- fold {f['fold']} ({f['queries']} queries): {f['picked']}: inner {f['inner']:.4f}, outer {f['outer']:.4f}"
              for f in report["tuned_folds"]]
    return "\n".join(lines)
