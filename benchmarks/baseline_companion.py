"""Would the strongest baseline be stronger with a companion clause beside it? (measurements; none adopted yet)

Why: some techniques a search engineer adds to a lexical query are baseline techniques, not
rewriting, so they are measured here as baseline variants,
``bool.should[DEFAULT_BASELINE clause, companion^w]``, with the same cross-validation as ``qrw
baselines``. Two companions:

* ``all-terms``: the same clause with ``operator: and``. In development runs of the v2 evaluation,
  ungated "rewrites" that copied the query (merged with ``operator: and``) helped some queries: they
  reward products holding *every* query term, which the shipped baseline (``operator: or``) lacks.
* ``phrase``: ``match_phrase`` over the catch-all field with slop s, the classic proximity boost: a
  product whose text says "micro sd card" beats one that names a card in one place and a micro USB
  port in another. One-word queries move too: the clause adds weight to the catch-all field against
  the baseline's brand field.

Method: the judged development queries of the training folds (``qrw.eval.folds``, fold 0 is
validation); the grid of (boost w, slop s) plus "off"; cross-validation over the training folds
(each fold scored with the setting best on the other three; ties go to off, then smaller w, then
smaller s); with ``--validation`` the validation fold is scored once, for the report only. Needs the index of ``qrw
sandbox`` / ``qrw index`` at ``--url``.

    .venv/bin/python benchmarks/baseline_companion.py --companion all-terms --validation --json docs/eval/baseline_all_terms.json
    .venv/bin/python benchmarks/baseline_companion.py --companion phrase --json docs/eval/baseline_phrase.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

HARM = 0.05  # a query is harmed (or won) when its nDCG@10 moves by more than this


def companion_clause(kind: str, query: str, boost: float, slop: int) -> dict:
    """The companion clause of ``kind`` for ``query``, as query text in a structured clause."""
    from qrw.search.baseline import CATCH_ALL, DEFAULT_BASELINE

    if kind == "all-terms":
        return DEFAULT_BASELINE.model_copy(update={"operator": "and"}).clause(query, boost=boost)
    return {"match_phrase": {CATCH_ALL: {"query": query, "slop": slop, "boost": boost}}}


def cross_validated(train, best, score, label, reference, reference_key: str = "outer_baseline"):
    """(per-fold rows, held-out nDCG@10 per query): each training fold scored with the setting ``best`` picks
    on the other training folds. ``score(setting, query)`` is a query's nDCG@10 under a setting; ``reference``
    is the setting every fold is compared with."""
    import statistics

    from qrw.eval.folds import fold_of

    folds, held_out = [], {}
    for fold in sorted({fold_of(q) for q in train}):
        inner = [q for q in train if fold_of(q) != fold]
        outer = [q for q in train if fold_of(q) == fold]
        picked = best(inner)
        folds.append({"fold": fold, "picked": label(picked),
                      "outer_ndcg@10": statistics.fmean(score(picked, q) for q in outer),
                      reference_key: statistics.fmean(score(reference, q) for q in outer)})
        held_out.update({q: score(picked, q) for q in outer})
    return folds, held_out


def emit(report: dict, path: Path | None) -> int:
    """Print the report as JSON, write it to ``path`` too when given; the exit status."""
    print(json.dumps(report, indent=2))
    if path:
        path.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch

    from qrw.eval.folds import fold_of
    from qrw.eval.judgments import load_judgments
    from qrw.eval.metrics import ndcg_at_k
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.catalog import default_data_dir
    from qrw.search.runner import search_many

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--companion", choices=("all-terms", "phrase"), default="all-terms")
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--index", default="products")
    parser.add_argument("--boosts", default=None, help="comma-separated w (default: all-terms 0.1..1, phrase 0.25..2)")
    parser.add_argument("--slops", default="0,1,3,10", help="comma-separated s (phrase only)")
    parser.add_argument("--validation", action="store_true",
                        help="also score the validation fold once with the chosen setting (for the report)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    qrels = load_judgments(default_data_dir() / "judgments" / "judgments.csv")
    train = [q for q in qrels if fold_of(q) != 0]
    valid = [q for q in qrels if fold_of(q) == 0]
    client = OpenSearch(args.url)
    default_boosts = "0.1,0.2,0.3,0.5,1.0" if args.companion == "all-terms" else "0.25,0.5,1,2"
    boosts = [float(b) for b in (args.boosts or default_boosts).split(",")]
    slops = [int(s) for s in args.slops.split(",")] if args.companion == "phrase" else [0]
    off = (0.0, 0)
    settings = [off] + [(b, s) for b in boosts for s in slops]

    def body(query: str, setting: tuple[float, int]) -> dict:
        boost, slop = setting
        if not boost:
            return DEFAULT_BASELINE.build(query)
        return {"query": {"bool": {"should": [DEFAULT_BASELINE.clause(query),
                                              companion_clause(args.companion, query, boost, slop)]}}}

    scores = {}
    for setting in settings:
        ranked = search_many(client, args.index, {q: body(q, setting) for q in train}, depth=10, batch_size=20)
        scores[setting] = {q: ndcg_at_k(ranked[q].ids, qrels[q]) for q in train}

    def mean(setting, queries) -> float:
        return statistics.fmean(scores[setting][q] for q in queries)

    def best(queries):
        return max(settings, key=lambda s: (round(mean(s, queries), 6), -s[0], -s[1]))

    def label(setting) -> str:
        return "off" if not setting[0] else f"w{setting[0]:g}" + (f" slop{setting[1]}" if args.companion == "phrase" else "")

    folds, held_out = cross_validated(train, best, lambda s, q: scores[s][q], label, off)
    deltas = {q: held_out[q] - scores[off][q] for q in train}
    chosen = best(train)
    report = {
        "method": f"bool.should[DEFAULT_BASELINE, {args.companion} companion ^w]; CV over the training folds "
                  "(fold 0 = validation, scored for the report only)",
        "companion": args.companion, "train_queries": len(train), "valid_queries": len(valid),
        "train_mean_by_setting": {label(s): mean(s, train) for s in settings},
        "moved_by_setting": {  # in-sample: training queries whose nDCG@10 moves beyond HARM under that setting
            label(s): {q: [round(scores[off][q], 3), round(scores[s][q], 3)] for q in train
                       if abs(scores[s][q] - scores[off][q]) > HARM}
            for s in settings if s != off},
        "train_cv_ndcg@10": statistics.fmean(held_out.values()), "train_baseline_ndcg@10": mean(off, train),
        "cv_won": sorted(((q, round(d, 3)) for q, d in deltas.items() if d > HARM), key=lambda x: -x[1]),
        "cv_harmed": sorted(((q, round(d, 3)) for q, d in deltas.items() if d < -HARM), key=lambda x: x[1]),
        "folds": folds, "chosen": label(chosen),
    }
    if args.validation and valid:
        ranked = {s: search_many(client, args.index, {q: body(q, s) for q in valid}, depth=10, batch_size=20)
                  for s in {off, chosen}}
        report["valid_ndcg@10"] = {label(s): statistics.fmean(ndcg_at_k(ranked[s][q].ids, qrels[q]) for q in valid)
                                   for s in ranked}
    return emit(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
