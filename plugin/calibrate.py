"""Calibration: choose the gate's thresholds and down-weight on judged training queries by cross-validation.

Method:

1. Rewrites and tag probabilities are produced once per query by any ``RewriteModel``; the serving
   guards are applied to them exactly as the chain does.
2. For every grid point ``(full_min, keep_min, down_weight)`` the gate decides per rewrite; queries
   whose kept (rewrite, weight) set is the same for several grid points are searched once.
3. Each (query, kept set) is searched (the caller's ``search`` function: the real OpenSearch in the
   CLI) and scored (``ndcg_at_k`` at 10 by default) against the query's judgments.
4. K-fold cross-validation over queries: on each fold, the grid point with the best mean score on
   the other folds is chosen and scored on this fold; the mean of those held-out scores estimates
   what calibration gains on unseen queries. The final config is the best grid point on all queries.
   Ties go to the more conservative point (fewer and lighter rewrites), so noise never buys drift.

Producing rewrites, searching and scoring are injected functions: this module does no I/O itself.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import random
from collections.abc import Callable, Mapping, Sequence

from qrw.errors import ConfigError
from qrw.plugin import guards
from qrw.plugin.config import GateConfig, GuardConfig, MergeConfig
from qrw.plugin.gate import decide
from qrw.plugin.merge import WeightedRewrite, merge_rewrites
from qrw.plugin.widening import is_respelling, may_add_documents

Outcomes = Mapping[str, Sequence[tuple[str, Mapping[str, float]]]]
"""Per query: (rewrite, tag probabilities) as the model produced them."""
Kept = tuple[tuple[str, float, bool], ...]
"""(rewrite, weight, expands): ``expands`` marks a rewrite the ``confident`` merge lets add documents."""
Search = Callable[[Mapping[str, dict]], Mapping[str, list[str]]]
"""Bodies by key -> ranked doc ids by key."""
Scorer = Callable[[Sequence[str], Mapping[str, int]], float]


@dataclasses.dataclass(frozen=True)
class Grid:
    full_min: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9, 1.01)
    keep_min: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9, 1.01)
    down_weight: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5)
    full_weight: tuple[float, ...] = (1.0,)

    def points(self) -> list[GateConfig]:
        """Valid points, most conservative first (high thresholds, light weights)."""
        points = [
            GateConfig(full_min=f, keep_min=k, down_weight=w, full_weight=fw)
            for f, k, fw, w in itertools.product(sorted(self.full_min, reverse=True), sorted(self.keep_min, reverse=True),
                                                 sorted(self.full_weight), sorted(self.down_weight))
            if w < fw
        ]
        if not points:
            raise ConfigError("the calibration grid is empty")
        return points


@dataclasses.dataclass
class CalibrationResult:
    best: GateConfig
    cv_score: float
    """Mean held-out score of the per-fold choices: the estimate for unseen queries."""
    baseline_score: float
    """Mean score of the original query alone on the same queries."""
    ungated_score: float
    """Mean score with every guarded rewrite at full weight."""
    best_train_score: float
    folds: list[dict]
    searched: int
    queries: int

    def as_dict(self) -> dict:
        return {"best": self.best.model_dump(), "cv_score": self.cv_score, "baseline_score": self.baseline_score,
                "ungated_score": self.ungated_score, "best_score_all_queries": self.best_train_score,
                "folds": self.folds, "bodies_searched": self.searched, "queries": self.queries}


def guarded(outcomes: Outcomes, guard_config: GuardConfig, extra_brands: Sequence[str] = ()) -> dict[str, list[tuple[str, Mapping[str, float]]]]:
    """The outcomes with the serving guards applied (what the gate would see)."""
    brands = guards.load_brands(guard_config, extra_brands)
    result = {}
    for query, rows in outcomes.items():
        reasons = guards.check(query, [text for text, _ in rows], guard_config, brands)
        result[query] = [row for row, reason in zip(rows, reasons) if reason is None]
    return result


def kept_for(rows: Sequence[tuple[str, Mapping[str, float]]], gate: GateConfig | None, full_weight: float = 1.0,
             query: str = "") -> Kept:
    """(rewrite, weight, expands) kept by ``gate``; ``None`` keeps every rewrite at ``full_weight`` (ungated).
    ``expands``: ``widening.may_add_documents`` for ``query``."""
    if gate is None:
        return tuple((text, full_weight, True) for text, _ in rows)
    kept = []
    for text, probs in rows:
        decision = decide(probs, gate, respelling=functools.partial(is_respelling, query, text))
        if decision.kept:
            kept.append((text, decision.weight, may_add_documents(query, text, full=decision.action == "full")))
    return tuple(kept)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def calibrate(
    outcomes: Outcomes,
    qrels: Mapping[str, Mapping[str, int]],
    search: Search,
    base_body: Callable[[str], dict],
    scorer: Scorer,
    *,
    grid: Grid = Grid(),
    guard_config: GuardConfig = GuardConfig(),
    merge: MergeConfig = MergeConfig(),
    folds: int = 5,
    seed: int = 0,
) -> CalibrationResult:
    queries = [q for q in qrels if q in outcomes]
    if len(queries) < folds or folds < 2:
        raise ConfigError(f"cross-validation needs at least {max(folds, 2)} judged queries with outcomes, and folds >= 2; got {len(queries)} queries, {folds} folds")
    rows = guarded({q: outcomes[q] for q in queries}, guard_config)
    points = grid.points()

    # Which (query, kept set) must be searched: each unique one once.
    kept_by_point: list[dict[str, Kept]] = [{q: kept_for(rows[q], p, query=q) for q in queries} for p in points]
    ungated = {q: kept_for(rows[q], None) for q in queries}
    unique: dict[tuple[str, Kept], str] = {}
    for mapping in [*kept_by_point, ungated, {q: () for q in queries}]:
        for query, kept in mapping.items():
            unique.setdefault((query, kept), f"b{len(unique)}")
    operator = None if merge.rewrite_operator == "same" else merge.rewrite_operator  # merged as serving merges
    bodies = {key: merge_rewrites(base_body(query), [WeightedRewrite(t, w, expands) for t, w, expands in kept], operator, merge.mode)
              for (query, kept), key in unique.items()}
    ranked = search(bodies)
    score = {pair: scorer(ranked[key], qrels[pair[0]]) for pair, key in unique.items()}

    per_point = [[score[(q, kept[q])] for q in queries] for kept in kept_by_point]

    def best_index(indices: Sequence[int]) -> int:
        # the first best in conservative-first order wins ties
        means = [_mean([scores[i] for i in indices]) for scores in per_point]
        top = max(means)
        return next(i for i, m in enumerate(means) if m >= top - 1e-12)

    order = list(range(len(queries)))
    random.Random(seed).shuffle(order)
    fold_of = {index: n % folds for n, index in enumerate(order)}
    held_out_scores: list[float] = []
    fold_reports = []
    for fold in range(folds):
        train = [i for i in range(len(queries)) if fold_of[i] != fold]
        test = [i for i in range(len(queries)) if fold_of[i] == fold]
        chosen = best_index(train)
        scores = [per_point[chosen][i] for i in test]
        held_out_scores.extend(scores)
        fold_reports.append({"fold": fold, "queries": len(test), "chosen": points[chosen].model_dump(), "held_out_score": _mean(scores)})
    best = best_index(list(range(len(queries))))
    return CalibrationResult(
        best=points[best],
        cv_score=_mean(held_out_scores),
        baseline_score=_mean([score[(q, ())] for q in queries]),
        ungated_score=_mean([score[(q, ungated[q])] for q in queries]),
        best_train_score=_mean(per_point[best]),
        folds=fold_reports,
        searched=len(unique),
        queries=len(queries),
    )
