"""``qrw train calibrate``: choose the gate on held-out training data and ship it with the model.

Why not on the judged training queries: the model was fine-tuned on them (repeated), so its tags are
over-confident there and thresholds chosen on them would let drift through on new queries. The
gate is therefore calibrated on the *held-out pseudo-queries* of the data build (the hash fold the
model never trained on; never a judged validation query), scored with the same relevance proxy
and in-process baseline the labels come from (``trainer.intent``, ``trainer.lexical``):

1. the model writes its rewrites and tags them, once per query (batched);
2. the serving guards run (brands from the catalog), as the chain does;
3. for both triggers (``chain.propose`` off: the model's own ``none`` decides which queries are
   rewritten; on: every query gets the model's best rewrite and the tags decide) and every grid
   point (full_min, keep_min, full_weight, down_weight) the kept rewrites are merged
   with the serving operator and scored (proxy nDCG@10); K-fold cross-validation over queries
   estimates the chosen point's held-out gain and harm; the point best on all queries is shipped,
   ties going to the more conservative one;
4. real queries hold a veto: every point is also scored on the judged *training* queries (their
   judged grades; the model has seen them, so they only veto, never choose), and a point that loses
   on them on average, or harms more than ``max_harm`` of them, is not chosen. Measured on default
   v2: pseudo-queries alone preferred keep_min 0.3 / down_weight 0.5 (+0.053 proxy gain there), a
   point that scored 0.989× on the judged training queries through OpenSearch.

The result is written as ``serving.yaml`` (gate + merge sections) into the model folder;
``qrw-export`` copies it into the exported folder, and ``qrw eval`` and the sandbox read it.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path

from qrw.trainer.config import field


@dataclasses.dataclass
class CalibrateConfig:
    """``qrw train calibrate``."""

    model: str = field("runs/sft", "model folder (checkpoint or exported); serving.yaml is written into it")
    data_dir: str = field("runs/data", "folder written by `qrw train data` (its held-out pseudo-queries are used)")
    queries: int = field(1200, "held-out pseudo-queries sampled for calibration")
    num_rewrites: int = field(3, "rewrites read per query")
    batch_size: int = field(16, "queries per model call")
    folds: int = field(5, "cross-validation folds over the calibration queries")
    rewrite_operator: str = field("and", "merge operator shipped with the gate (and | or | same)")
    merge_mode: str = field("confident", "merge mode measured and shipped with the gate: which rewrites may add documents (expand: all | confident: full-weight ones | rerank: none)")
    full_min: list[float] = field([0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01], "P(exact) thresholds tried")
    keep_min: list[float] = field([0.3, 0.4, 0.5, 0.7, 0.8, 0.9, 1.01], "P(exact)+P(substitute) thresholds tried")
    full_weight: list[float] = field([0.3, 0.5, 1.0], "full-weight boosts tried")
    down_weight: list[float] = field([0.1, 0.2, 0.3, 0.5], "down-weight boosts tried")
    try_propose: bool = field(True, "also measure serving with chain.propose (the model's best rewrite even when it says none; the gate decides) and ship it if better")
    judged_check: bool = field(True, "also score every grid point on the judged training queries (real queries; never validation) and veto points that lose there")
    min_judged_gain: float = field(0.0, "smallest mean proxy nDCG@10 change on the judged training queries a chosen point may have")
    harm_margin: float = field(0.05, "a query is harmed when its proxy nDCG@10 drops by more than this")
    max_harm: float = field(0.05, "grid points whose held-out harm rate exceeds this are not chosen")
    seed: int = field(0, "sampling and fold seed")
    progress: bool = field(True, "show progress bars")


def _judged_training_queries(data_dir: Path, facets, exclude: set[str]) -> dict:
    """Intents of the judged development queries of the training folds (``split.json``), from the
    judgments the data build read (its card's ``sources.judgments``); empty when it read none."""
    from qrw.eval.judgments import load_judgments
    from qrw.trainer.intent import judged_intent

    card = json.loads((data_dir / "data_card.json").read_text())
    path = (card.get("sources") or {}).get("judgments")
    split_path = data_dir / "split.json"
    if not path or not Path(path).is_file() or not split_path.is_file():
        return {}
    qrels = load_judgments(path)
    train = json.loads(split_path.read_text()).get("train_queries", [])
    return {q: judged_intent(q, qrels[q], facets) for q in train if q in qrels and q not in exclude}


def run_calibrate(config: CalibrateConfig) -> dict:
    from tqdm import tqdm

    from qrw.eval.compare import load_rewrite_model
    from qrw.plugin.calibrate import Grid, guarded, kept_for
    from qrw.errors import ConfigError
    from qrw.plugin.config import SERVING_NAME, GuardConfig
    from qrw.plugin.merge import MERGE_MODES
    from qrw.trainer.catalog import TrainingCatalog
    from qrw.trainer.data import read_jsonl
    from qrw.trainer.facets import by_type
    from qrw.trainer.intent import judged_intent, ndcg, pseudo_intent
    from qrw.trainer.lexical import rerank_mask
    import numpy as np

    if config.merge_mode not in MERGE_MODES:
        raise ConfigError(f"merge_mode {config.merge_mode!r} is not one of {', '.join(MERGE_MODES)}")
    started = time.perf_counter()
    data_dir = Path(config.data_dir)
    built = json.loads((data_dir / "data_card.json").read_text())["config"]
    catalog = TrainingCatalog.from_source(built.get("profile"), built.get("catalog"), built.get("data_dir"))
    facets = catalog.facets()
    members = by_type(facets)
    index = catalog.lexical_index()
    rows = [r for r in read_jsonl(data_dir / "calibration_pseudo.jsonl")]
    rng = random.Random(config.seed)
    rows = rng.sample(rows, min(config.queries, len(rows)))
    intents = {r["query"]: pseudo_intent(r["query"], r["ptype"], r.get("brand"), r.get("values") or (), facets, members)
               for r in rows}
    queries = list(intents)
    judged = _judged_training_queries(data_dir, facets, exclude=set(intents)) if config.judged_check else {}
    intents.update(judged)
    every_query = queries + list(judged)  # pseudo-queries first: indices below len(queries)
    judged_indices = list(range(len(queries), len(every_query)))

    model = load_rewrite_model(config.model)
    generation = getattr(model, "generation", None)
    modes = [False, True] if config.try_propose and hasattr(generation, "propose") else [False]

    def rewrite_all(propose: bool) -> dict[str, list[tuple[str, dict]]]:
        if hasattr(generation, "propose"):
            model.generation = dataclasses.replace(generation, propose=propose)
        outcomes: dict[str, list[tuple[str, dict]]] = {}
        for start in tqdm(range(0, len(every_query), config.batch_size), desc=f"rewriting (calibration, propose={propose})",
                          unit="batch", disable=not config.progress):
            batch = every_query[start : start + config.batch_size]
            generated = model.generate(batch, config.num_rewrites)
            pairs = [(q, r) for q, rewrites in zip(batch, generated) for r in rewrites[: config.num_rewrites]]
            tags = model.tag(pairs) if pairs else []
            for q in batch:
                outcomes[q] = []
            for (q, r), probs in zip(pairs, tags):
                outcomes[q].append((r, probs))
        return outcomes

    guard_config = GuardConfig()
    outcomes_by_mode = {propose: rewrite_all(propose) for propose in modes}
    rows_by_mode = {propose: guarded(outcomes, guard_config, sorted(facets.brands)) for propose, outcomes in outcomes_by_mode.items()}
    grid = Grid(tuple(config.full_min), tuple(config.keep_min), tuple(config.down_weight), tuple(config.full_weight))
    points = [(propose, point) for propose in modes for point in grid.points()]  # propose off first: ties go to it
    operator = None if config.rewrite_operator == "same" else config.rewrite_operator
    base_scores = {q: index.clause_scores(q) for q in every_query}
    base_ndcg = {q: ndcg(index.rank(base_scores[q], 10), intents[q], facets) for q in every_query}
    cache: dict[tuple, float] = {}

    def score(query: str, kept) -> float:
        key = (query, kept)
        if key not in cache:
            base = base_scores[query]
            adding, reordering = base.copy(), np.zeros_like(base)
            for text, weight, expands in kept:
                may_add = config.merge_mode == "expand" or (config.merge_mode == "confident" and expands)
                scores = weight * index.clause_scores(text, operator=operator)
                if may_add:
                    adding = adding + scores
                else:
                    reordering = reordering + scores
            merged = adding + rerank_mask(base, reordering)  # as the plugin's merge groups them
            cache[key] = ndcg(index.rank(merged, 10), intents[query], facets)
        return cache[key]

    per_point = []
    for propose, point in tqdm(points, desc="gate grid", unit="point", disable=not config.progress):
        per_point.append([score(q, kept_for(rows_by_mode[propose][q], point, query=q)) - base_ndcg[q] for q in every_query])
    ungated = [score(q, kept_for(rows_by_mode[False][q], None, max(config.full_weight))) - base_ndcg[q] for q in queries]

    def harm(deltas) -> float:
        return sum(d < -config.harm_margin for d in deltas) / max(len(deltas), 1)

    def judged_ok(deltas) -> bool:
        """Real queries veto: on the judged training queries a point must not lose on average nor
        harm more than ``max_harm`` of them (pseudo-queries alone over-reward heavy merging)."""
        if not judged_indices:
            return True
        values = [deltas[j] for j in judged_indices]
        return sum(values) / len(values) >= config.min_judged_gain and harm(values) <= config.max_harm

    def best_index(indices) -> int:
        allowed = [i for i, deltas in enumerate(per_point)
                   if harm([deltas[j] for j in indices]) <= config.max_harm and judged_ok(deltas)]
        candidates = allowed or list(range(len(per_point)))
        means = {i: sum(per_point[i][j] for j in indices) / len(indices) for i in candidates}
        top = max(means.values())
        return next(i for i in candidates if means[i] >= top - 1e-12)  # conservative-first order wins ties

    order = list(range(len(queries)))
    rng.shuffle(order)
    fold_of = {index_: n % config.folds for n, index_ in enumerate(order)}
    held_out, fold_reports = [], []
    for fold in range(config.folds):
        train = [i for i in range(len(queries)) if fold_of[i] != fold]
        test = [i for i in range(len(queries)) if fold_of[i] == fold]
        chosen = best_index(train)
        deltas = [per_point[chosen][i] for i in test]
        held_out += deltas
        fold_reports.append({"fold": fold, "chosen": {**points[chosen][1].model_dump(), "propose": points[chosen][0]}, "held_out_gain": sum(deltas) / len(deltas),
                             "held_out_harm": harm(deltas)})
    every = list(range(len(queries)))
    chosen_index = best_index(every)
    propose, best = points[chosen_index]
    by_mode = {}
    for mode in modes:  # each mode's own best point on all queries (in-sample), for the report
        indices = [i for i, (p, _) in enumerate(points) if p == mode]
        allowed = [i for i in indices if harm(per_point[i][: len(queries)]) <= config.max_harm and judged_ok(per_point[i])] or indices
        top = max(allowed, key=lambda i: sum(per_point[i][: len(queries)]))
        by_mode[f"propose={mode}"] = {"point": points[top][1].model_dump(), "gain": sum(per_point[top][: len(queries)]) / len(queries),
                                      "harm": harm(per_point[top][: len(queries)]),
                                      "queries_with_rewrites": sum(bool(v) for v in outcomes_by_mode[mode].values())}
    report = {
        "method": "gate grid on held-out pseudo-queries (never trained on), proxy nDCG@10 with the in-process baseline; "
                  f"{config.folds}-fold CV; points with held-out harm above {config.max_harm} excluded; "
                  "points that lose on average (or harm more) on the judged training queries vetoed",
        "queries": len(queries),
        "base_proxy_ndcg@10": sum(base_ndcg.values()) / len(queries),
        "cv_gain": sum(held_out) / len(held_out), "cv_harm": harm(held_out),
        "ungated_gain": sum(ungated) / len(ungated), "ungated_harm": harm(ungated),
        "queries_with_rewrites": sum(bool(v) for v in outcomes_by_mode[propose].values()),
        "judged_training_queries": len(judged_indices),
        **({"judged_gain": sum(per_point[chosen_index][j] for j in judged_indices) / len(judged_indices),
            "judged_harm": harm([per_point[chosen_index][j] for j in judged_indices])} if judged_indices else {}),
        "best": best.model_dump(), "propose": propose, "modes": by_mode, "rewrite_operator": config.rewrite_operator, "merge_mode": config.merge_mode, "folds": fold_reports,
        "seconds": round(time.perf_counter() - started, 1),
    }
    import yaml

    serving = {"gate": best.model_dump(), "merge": {"rewrite_operator": config.rewrite_operator, "mode": config.merge_mode},
               **({"chain": {"propose": True}} if propose else {}),
               **({"guards": {"brands_field": catalog.brands_field}} if catalog.brands_field else {})}
    header = ("# Shipped with the model by `qrw train calibrate` (held-out pseudo-queries, "
              f"CV gain {report['cv_gain']:+.4f}, harm {report['cv_harm']:.3f}); a plugin.yaml overrides any key.\n")
    Path(config.model, SERVING_NAME).write_text(header + yaml.safe_dump(serving, sort_keys=False))
    Path(config.model, "calibration.json").write_text(json.dumps(report, indent=2))
    return report
