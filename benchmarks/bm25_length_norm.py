"""Does BM25's length normalisation cost the baseline its products? (measurement of the index's similarity)

Why: the catch-all field holds a product's title, description and every attribute, so a notebook or a
monitor (dozens of attributes) has a far longer field than a privacy filter, a sleeve or a monitor arm.
With BM25's default ``b = 0.75`` a one-word query such as ``laptop``, ``monitor`` or ``projector``
ranks those short accessory texts above every product of the type the user named. ``b`` (how much a
long field is penalised) and ``k1`` (how fast repeated terms saturate) are index settings, not query
settings, so they are measured here on a side copy of the index rather than in ``qrw baselines``.

Method: the catalog index at ``--index`` is copied once (scroll and bulk; the integ-test node has no reindex module) into ``--side-index`` with the
same analysis and mapping; for each (b, k1) of the grid the copy is closed, its default similarity
set (``index.similarity.default``: BM25 with that b and k1; BM25 reads field lengths stored at index
time and applies b and k1 at query time, so no reindex is needed) and reopened, and the training-fold
queries are searched with ``DEFAULT_BASELINE`` unchanged. Cross-validation over the training folds as
in ``qrw baselines`` (each fold scored with the setting best on the other three; ties go to Lucene's
default b 0.75, k1 1.2). The copy's similarity is always set explicitly, so the figures do not depend
on the similarity the source index was built with (``qrw.search.baseline.SIMILARITY``, Lucene's
defaults: k1 0.6 was measured here and not adopted). With ``--validation`` the validation fold is scored once with the chosen
setting, for the report only. With ``--reselect`` the selection of ``qrw baselines`` (fields and weights by
the same cross-validation) is run again on the copy at the chosen setting, to see whether the query
it picks stays the shipped one. Deterministic: one run. Needs the index of ``qrw sandbox`` / ``qrw
index`` at ``--url``.

    .venv/bin/python benchmarks/bm25_length_norm.py --validation --reselect --json docs/eval/bm25_length_norm.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

HARM = 0.05  # a query is harmed (or won) when its nDCG@10 moves by more than this
LUCENE_DEFAULT = (0.75, 1.2)  # Lucene's BM25 defaults, what the project's index used before this measurement


def copy_index(client, source: str, target: str) -> None:
    """A fresh copy of ``source`` (analysis, mapping, documents) under ``target``."""
    from opensearchpy import helpers

    concrete = next(iter(client.indices.get(index=source)))
    meta = client.indices.get(index=source)[concrete]
    analysis = meta["settings"]["index"].get("analysis", {})
    if client.indices.exists(index=target):
        client.indices.delete(index=target)
    client.indices.create(index=target, body={
        "settings": {"number_of_shards": 1, "number_of_replicas": 0, "analysis": analysis},
        "mappings": meta["mappings"]})
    # the integ-test node has no reindex module: scroll the documents out and bulk them in
    actions = ({"_index": target, "_id": hit["_id"], "_source": hit["_source"]}
               for hit in helpers.scan(client, index=source, query={"query": {"match_all": {}}}, size=1000))
    helpers.bulk(client, actions, chunk_size=1000, request_timeout=600)
    client.indices.refresh(index=target)


def set_similarity(client, index: str, b: float, k1: float) -> None:
    """Close ``index``, make BM25(b, k1) its default similarity, reopen it and wait for it."""
    client.indices.close(index=index)
    client.indices.put_settings(index=index, body={"index": {"similarity": {"default": {
        "type": "BM25", "b": b, "k1": k1}}}})
    client.indices.open(index=index)
    client.cluster.health(index=index, wait_for_status="green")


def joint_selection(client, args, qrels, train, valid, k1s, search_many, ndcg_at_k, cross_validated) -> dict:
    """k1 and the baseline's fields chosen together: every fixed variant and weight-grid spec of ``qrw baselines``
    at every k1 (b 0.75), nested CV over the training folds as there (ties: Lucene's k1, then fewer fields), against
    the same CV restricted to Lucene's k1 (what ``qrw baselines`` does today); validation once, for the report."""
    from tqdm import tqdm

    from qrw.eval.baselines import weight_grid
    from qrw.search.baseline import VARIANTS

    default_k1 = LUCENE_DEFAULT[1]
    specs = {spec.name: spec for spec in [*VARIANTS.values(), *weight_grid()]}
    scores: dict[tuple[float, str], dict[str, float]] = {}
    for k1 in k1s:
        set_similarity(client, args.side_index, LUCENE_DEFAULT[0], k1)
        bodies = {(name, q): spec.build(q) for name, spec in specs.items() for q in train}
        ranked = search_many(client, args.side_index, bodies, depth=10, batch_size=100, progress=True, desc=f"k1 {k1:g}")
        for name in specs:
            scores[(k1, name)] = {q: ndcg_at_k(ranked[(name, q)].ids, qrels[q]) for q in train}

    def pick(keys):
        def best(queries):
            return max(keys, key=lambda key: (round(statistics.fmean(scores[key][q] for q in queries), 6),
                                               key[0] == default_k1, -len(specs[key[1]].fields)))
        return best

    every = list(scores)
    lucene = [key for key in every if key[0] == default_k1]
    label = lambda key: f"k1 {key[0]:g} {key[1]}"  # noqa: E731
    score = lambda key, q: scores[key][q]  # noqa: E731
    joint_folds, joint_held = cross_validated(train, pick(every), score, label, pick(lucene)(train), reference_key="outer_reference_pick")
    reference_folds, reference_held = cross_validated(train, pick(lucene), score, label, pick(lucene)(train))
    deltas = {q: joint_held[q] - reference_held[q] for q in train}
    chosen, reference = pick(every)(train), pick(lucene)(train)
    out = {
        "k1": k1s, "specs_per_k1": len(specs),
        "joint_cv_ndcg@10": statistics.fmean(joint_held.values()), "reference_cv_ndcg@10": statistics.fmean(reference_held.values()),
        "joint_folds": joint_folds, "reference_folds": reference_folds,
        "cv_won": sorted(((q, round(d, 3)) for q, d in deltas.items() if d > HARM), key=lambda x: -x[1]),
        "cv_harmed": sorted(((q, round(d, 3)) for q, d in deltas.items() if d < -HARM), key=lambda x: x[1]),
        "chosen_on_all_training": label(chosen), "reference_on_all_training": label(reference),
        "best_per_k1": {f"{k1:g}": label(pick([key for key in every if key[0] == k1])(train)) for k1 in k1s},
        "train_mean_of_best_per_k1": {f"{k1:g}": statistics.fmean(scores[pick([key for key in every if key[0] == k1])(train)].values())
                                      for k1 in k1s},
    }
    if valid:
        on_valid = {}
        for key in dict.fromkeys((reference, chosen)):
            set_similarity(client, args.side_index, LUCENE_DEFAULT[0], key[0])
            ranked = search_many(client, args.side_index, {q: specs[key[1]].build(q) for q in valid}, depth=10)
            on_valid[label(key)] = statistics.fmean(ndcg_at_k(ranked[q].ids, qrels[q]) for q in valid)
        out["valid_ndcg@10_once"] = on_valid
    return out


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch

    from baseline_companion import cross_validated, emit

    from qrw.eval.folds import fold_of
    from qrw.eval.judgments import load_judgments
    from qrw.eval.metrics import ndcg_at_k, recall_at_k
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.catalog import default_data_dir
    from qrw.search.runner import search_many

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--index", default="products")
    parser.add_argument("--side-index", default="qrw-bench-bm25")
    parser.add_argument("--b", default="0,0.1,0.25,0.5,0.75", help="comma-separated b values")
    parser.add_argument("--k1", default="0.6,1.2,2.0", help="comma-separated k1 values")
    parser.add_argument("--validation", action="store_true",
                        help="also score the validation fold once with the chosen setting (for the report)")
    parser.add_argument("--reselect", action="store_true",
                        help="also run the baseline selection of `qrw baselines` on the copy at the chosen setting: "
                             "does the query it picks stay the shipped one?")
    parser.add_argument("--joint-k1", default="",
                        help="comma-separated k1 values (b 0.75): choose k1 and the baseline's fields together by the same "
                             "nested CV as `qrw baselines` (every fixed variant and weight-grid spec at every k1)")
    parser.add_argument("--keep", action="store_true", help="keep the side index afterwards")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    qrels = load_judgments(default_data_dir() / "judgments" / "judgments.csv")
    train = [q for q in qrels if fold_of(q) != 0]
    valid = [q for q in qrels if fold_of(q) == 0]
    client = OpenSearch(args.url, timeout=120)
    copy_index(client, args.index, args.side_index)
    settings = [LUCENE_DEFAULT] + [(float(b), float(k1)) for b in args.b.split(",") for k1 in args.k1.split(",")
                            if (float(b), float(k1)) != LUCENE_DEFAULT]

    def run(setting, queries) -> dict[str, tuple[float, float | None, int]]:
        set_similarity(client, args.side_index, *setting)
        ranked = search_many(client, args.side_index, {q: DEFAULT_BASELINE.build(q) for q in queries}, depth=100)
        return {q: (ndcg_at_k(ranked[q].ids, qrels[q]), recall_at_k(ranked[q].ids, qrels[q]), ranked[q].total)
                for q in queries}

    rows = {s: run(s, train) for s in settings}
    scores = {s: {q: r[0] for q, r in rows[s].items()} for s in settings}

    def mean(setting, queries) -> float:
        return statistics.fmean(scores[setting][q] for q in queries)

    def best(queries):
        return max(settings, key=lambda s: (round(mean(s, queries), 6), s == LUCENE_DEFAULT))

    def label(setting) -> str:
        return f"b{setting[0]:g} k1 {setting[1]:g}"

    folds, held_out = cross_validated(train, best, lambda s, q: scores[s][q], label, LUCENE_DEFAULT,
                                      reference_key="outer_lucene_default")
    deltas = {q: held_out[q] - scores[LUCENE_DEFAULT][q] for q in train}
    chosen = best(train)
    report = {
        "method": ("side copy of the index, BM25 (b, k1) as index.similarity.default, DEFAULT_BASELINE unchanged; "
                   "CV over the training folds (fold 0 = validation, scored for the report only); one run, deterministic"),
        "train_queries": len(train), "valid_queries": len(valid),
        "train_mean_by_setting": {label(s): mean(s, train) for s in settings},
        "moved_by_chosen": {q: [round(scores[LUCENE_DEFAULT][q], 3), round(scores[chosen][q], 3)] for q in train
                            if abs(scores[chosen][q] - scores[LUCENE_DEFAULT][q]) > HARM},
        "train_cv_ndcg@10": statistics.fmean(held_out.values()), "train_lucene_default_ndcg@10": mean(LUCENE_DEFAULT, train),
        "cv_won": sorted(((q, round(d, 3)) for q, d in deltas.items() if d > HARM), key=lambda x: -x[1]),
        "cv_harmed": sorted(((q, round(d, 3)) for q, d in deltas.items() if d < -HARM), key=lambda x: x[1]),
        "folds": folds, "chosen": label(chosen),
        "median_total_hits": {label(s): statistics.median(r[2] for r in rows[s].values()) for s in {LUCENE_DEFAULT, chosen}},
    }
    if args.validation and valid:
        on_valid = {s: run(s, valid) for s in dict.fromkeys((LUCENE_DEFAULT, chosen))}
        report["valid_ndcg@10"] = {label(s): statistics.fmean(r[0] for r in on_valid[s].values()) for s in on_valid}
        report["valid_moved"] = {q: [round(on_valid[LUCENE_DEFAULT][q][0], 3), round(on_valid[chosen][q][0], 3)]
                                 for q in valid if abs(on_valid[chosen][q][0] - on_valid[LUCENE_DEFAULT][q][0]) > HARM}
    if args.reselect:
        from qrw.eval.baselines import select_baseline

        set_similarity(client, args.side_index, *chosen)
        selection = select_baseline(client, args.side_index, qrels, url=args.url)
        report["reselected_at_chosen"] = {
            "chosen": selection["chosen"]["name"], "shipped": DEFAULT_BASELINE.name,
            "best_fixed": selection["best_fixed"], "best_fixed_cv_ndcg@10": selection["best_fixed_cv_ndcg@10"],
            "tuned_cv_ndcg@10": selection["tuned_cv_ndcg@10"], "shipped_train_ndcg@10": mean(chosen, train)}
    if args.joint_k1:
        report["joint_k1_and_fields"] = joint_selection(client, args, qrels, train, valid if args.validation else [],
                                                        [float(k) for k in args.joint_k1.split(",")], search_many, ndcg_at_k,
                                                        cross_validated)
    if not args.keep:
        client.indices.delete(index=args.side_index)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return emit(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
