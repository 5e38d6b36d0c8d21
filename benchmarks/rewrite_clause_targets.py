"""Where should a rewrite land: the query's own text fields, or a product-type field? (a measurement)

Why: over the stemmed baseline, OR-merging a vocabulary bridge often cannot help. For ``laptop`` the
judged notebooks never say "laptop", while laptop cases, locks and privacy screens say both "laptop"
and "notebook case"; a rewrite ``notebook`` merged into ``bool.should`` adds its score to theirs
too, so the accessories stay on top. A clause that matches the catalog's *product type* exactly
(``term`` on a ``product_type`` keyword) would lift notebooks and not notebook cases. This script
measures that idea before anyone builds it, on the training folds of the judged queries only:

1. **Type field in the baseline**: ``DEFAULT_BASELINE`` plus ``product_type^w`` (the type read from
   titles by ``trainer.facets``, stemmed), w in ``--type-weights``.
2. **Rewrite clause targets**: for every training query, the label-free candidates of
   ``trainer.candidates.CandidateGenerator`` that are catalog product types, merged as
   ``bool.should[baseline clause, X^boost]`` where X is either the text mirror (the baseline's
   ``multi_match`` with ``operator: and``, what the plugin sends today) or ``term`` on
   ``product_type.raw``. Per candidate: the nDCG@10 change against the baseline; per setting: mean
   change, candidates that help / hurt by more than 0.05, and the oracle (best candidate per query,
   none allowed), the ceiling a perfect gate over these candidates would reach.
3. **Can the tagger tell them apart?** With ``--tag-model`` (default: the shipped model), every
   candidate of the text-mirror setting at ``--probe-boost`` is tagged, and the report gives the
   rank AUC of P(exact) + P(substitute) between the candidates that measurably help and those that
   hurt, on real judged outcomes (``qrw train evaluate`` measures the same on pseudo-query labels).
   Copies of the query are tagged too, since the model writes them.

It builds its own side index (``--index-name``, the catalog's documents plus ``product_type``) on the
node at ``--url`` and deletes it at the end. The validation fold is never searched.

    .venv/bin/python benchmarks/rewrite_clause_targets.py --json docs/eval/rewrite_clause_targets.json
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_candidates import candidate_generator, emit, training_queries  # noqa: E402

HARM = 0.05


def add_side_index_arguments(parser: argparse.ArgumentParser) -> None:
    """The node, the baseline's alias and the side index's name (shared with ``query_type_intent.py``)."""
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--index", default="products", help="alias of the baseline's index (`qrw sandbox` / `qrw index`)")
    parser.add_argument("--index-name", default="qrw-exp-typed")


@contextlib.contextmanager
def typed_side_index(args: argparse.Namespace, catalog, facets, qrels) -> Iterator[tuple[object, Callable[[dict], dict]]]:
    """A side index on ``args.url``: the baseline index's settings, mapping and documents plus a
    ``product_type`` field (stemmed text with a ``raw`` keyword), deleted on exit. Yields the client
    and ``ndcg(bodies)``: each body's nDCG@10 against ``qrels`` of its key (or of the key's first item)."""
    from opensearchpy import OpenSearch, helpers

    from qrw.eval.metrics import ndcg_at_k
    from qrw.search.baseline import STEMMED_ANALYZER
    from qrw.search.runner import search_many

    client = OpenSearch(args.url, timeout=120)
    name = args.index_name
    source = next(iter(client.indices.get_alias(name=args.index)))  # the settings and mapping of the baseline's index
    info = client.indices.get(index=source)[source]
    settings = {k: v for k, v in info["settings"]["index"].items() if k in ("analysis", "similarity", "number_of_shards", "number_of_replicas")}
    mappings = info["mappings"]
    mappings["properties"]["product_type"] = {"type": "text", "analyzer": STEMMED_ANALYZER,
                                              "fields": {"raw": {"type": "keyword"}}}
    if client.indices.exists(index=name):
        client.indices.delete(index=name)
    client.indices.create(index=name, body={"settings": {"index": settings}, "mappings": mappings})
    actions = ({"_index": name, "_id": pid, "_source": dict(doc, product_type=facets.by_id[pid].product_type)}
               for pid, doc in zip(catalog.ids, catalog.documents))
    helpers.bulk(client, actions, chunk_size=2000, request_timeout=600)
    client.indices.refresh(index=name)

    def ndcg(bodies: dict) -> dict:
        ranked = search_many(client, name, bodies, depth=10, batch_size=20)
        return {key: ndcg_at_k(ranked[key].ids, qrels[key[0] if isinstance(key, tuple) else key]) for key in bodies}

    try:
        yield client, ndcg
    finally:
        client.indices.delete(index=name, ignore_unavailable=True)


def _probe_tagger(model_name: str, gains: dict[tuple[str, str], float], boost: float) -> dict:
    """Tag every (query, candidate) with the model; how well P(exact) + P(substitute) orders help over hurt."""
    from qrw.plugin import model_store
    from qrw.plugin.runtime import load_model
    from qrw.trainer.evaluate import rank_auc

    model = load_model(model_store.resolve(model_name))
    pairs = list(gains)
    probabilities = model.tag(pairs)
    score = {pair: p.get("exact", 0.0) + p.get("substitute", 0.0) for pair, p in zip(pairs, probabilities)}
    helps = [score[p] for p in pairs if gains[p] > HARM]
    hurts = [score[p] for p in pairs if gains[p] < -HARM]
    copies = model.tag([(q, q) for q in sorted({q for q, _ in pairs})])
    return {
        "model": model_name, "clause": f"text_mirror^{boost:g}", "help": len(helps), "hurt": len(hurts),
        "auc_help_over_hurt": rank_auc(helps, hurts),
        "mean_score_help": statistics.fmean(helps) if helps else None,
        "mean_score_hurt": statistics.fmean(hurts) if hurts else None,
        "mean_score_copy_of_query": statistics.fmean(p.get("exact", 0.0) + p.get("substitute", 0.0) for p in copies),
        "helping": sorted(([q, c, round(gains[(q, c)], 3), round(score[(q, c)], 3)] for q, c in pairs if gains[(q, c)] > HARM),
                          key=lambda row: -row[2]),
    }


def main(argv: list[str] | None = None) -> int:
    from qrw.trainer.catalog import TrainingCatalog
    from tqdm import tqdm

    from qrw.search.baseline import DEFAULT_BASELINE

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_side_index_arguments(parser)
    parser.add_argument("--type-weights", default="0.25,0.5,1.0")
    parser.add_argument("--boosts", default="0.3,0.5,1.0")
    parser.add_argument("--tag-model", default="default", help="rewriter whose tagger is probed ('' to skip)")
    parser.add_argument("--probe-boost", type=float, default=0.5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()

    qrels, train = training_queries()
    catalog = TrainingCatalog.icecat()
    facets = catalog.facets()
    with typed_side_index(args, catalog, facets, qrels) as (client, ndcg):
        base = ndcg({q: DEFAULT_BASELINE.build(q) for q in train})
        report: dict = {"train_queries": len(train), "baseline_ndcg@10": statistics.fmean(base.values()),
                        "type_coverage": round(facets.coverage(), 4), "baseline_with_type_field": {}, "clauses": {}}
        for weight in (float(w) for w in args.type_weights.split(",")):
            spec = DEFAULT_BASELINE.model_copy(update={"fields": (*DEFAULT_BASELINE.fields, f"product_type^{weight:g}")})
            scores = ndcg({q: spec.build(q) for q in train})
            deltas = [scores[q] - base[q] for q in train]
            report["baseline_with_type_field"][f"product_type^{weight:g}"] = {
                "ndcg@10": statistics.fmean(scores.values()), "win": sum(d > HARM for d in deltas),
                "harm": sum(d < -HARM for d in deltas)}

        generator = candidate_generator(catalog)
        candidates = {q: [c for c in generator.propose(q) if c in facets.types]
                      for q in tqdm(train, desc="proposing candidates", unit="query")}
        mirror = DEFAULT_BASELINE.model_copy(update={"operator": "and"})
        clause_of = {
            "text_mirror": lambda text, boost: mirror.clause(text, boost=boost),
            "type_term": lambda text, boost: {"term": {"product_type.raw": {"value": text, "boost": boost}}},
        }
        examples: dict[str, list] = {}
        probe_gains: dict[tuple[str, str], float] = {}
        for boost in (float(b) for b in args.boosts.split(",")):
            for target, clause in clause_of.items():
                bodies = {(q, c): {"query": {"bool": {"should": [DEFAULT_BASELINE.clause(q), clause(c, boost)]}}}
                          for q in train for c in candidates[q]}
                scores = ndcg(bodies)
                gains: dict[str, dict[str, float]] = collections.defaultdict(dict)
                for (q, c), s in scores.items():
                    gains[q][c] = s - base[q]
                flat = [g for per in gains.values() for g in per.values()]
                if target == "text_mirror" and boost == args.probe_boost:
                    probe_gains = {(q, c): g for q, per in gains.items() for c, g in per.items()}
                oracle = sum(max(0.0, *per.values()) for per in gains.values()) / len(train)
                report["clauses"][f"{target}^{boost:g}"] = {
                    "candidates": len(flat), "mean_gain": statistics.fmean(flat) if flat else 0.0,
                    "help": sum(g > HARM for g in flat), "hurt": sum(g < -HARM for g in flat),
                    "oracle_gain_per_query": oracle,
                    "oracle_ratio": (report["baseline_ndcg@10"] + oracle) / report["baseline_ndcg@10"]}
                examples[f"{target}^{boost:g}"] = sorted(
                    ((q, c, round(g, 3)) for q, per in gains.items() for c, g in per.items() if g > HARM),
                    key=lambda row: -row[2])[:12]
        report["best_candidates"] = examples
        if args.tag_model and probe_gains:
            report["tagger_probe"] = _probe_tagger(args.tag_model, probe_gains, args.probe_boost)
        report["method"] = {
            "machine": platform.platform(), "python": platform.python_version(),
            "opensearch": client.info()["version"]["number"], "queries": "judged training folds (fold 0 = validation, never searched)",
            "harm_threshold": HARM, "seconds": round(time.perf_counter() - started, 1)}
    emit(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
