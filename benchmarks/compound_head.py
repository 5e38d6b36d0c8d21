"""Demote products the query names only as a modifier: "monitor" in "monitor arm" (a measurement).

Why: on one-word head queries the baseline ranks accessories first (``monitor`` -> monitor arms, stands
and privacy filters; ``laptop`` -> sleeves, locks and backpacks), because their short titles hold the
query word. In an English product phrase the last noun names the product: a "monitor arm" is an arm,
so the query word there is a modifier. The catalog tells which words are product nouns: the last words
of the product types ``trainer.facets`` reads from titles. No labels, no model, no word list.

Method, as written down before the run: for a query whose last word ``q`` is followed in catalog titles
by a word ``x`` that ends catalog product types covering at least ``MIN_TYPE_PRODUCTS`` products
(``x`` alphabetic, not ``q``, not a query word, the pair ``q x`` in at least ``MIN_PAIR_TITLES`` titles),
products whose title holds the phrase ``q x`` (``match_phrase`` on ``title.stem``) are demoted:
``boosting {positive: baseline, negative: bool.should[phrases], negative_boost: nb}``, nb in
``--negative-boosts``. 4-fold cross-validation inside the training folds (each fold's nb picked on
the other three; "off" is a setting). Worth building only if the CV gain is at least +0.010 nDCG@10
with at most 5 % of the training queries harmed (drop > 0.05). ``--validation`` scores the validation
fold once with the training folds' choice, for the report only. ``--pair-field name`` (stop 29, written down
before its run with the same rule) counts the pairs in, and matches the phrases on, the product's own name
instead of its title.

    .venv/bin/python benchmarks/compound_head.py --validation --json docs/eval/compound_head.json
"""

from __future__ import annotations

import collections
import platform
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_companion import cross_validated, emit
from head_specializations import title_pairs
from training_candidates import node_parser, training_queries

HARM = 0.05
MIN_TYPE_PRODUCTS = 10
MIN_PAIR_TITLES = 3
OFF = 1.0  # negative_boost 1 leaves every score as it is
_WORD = re.compile(r"\w+", re.UNICODE)


def type_heads(type_counts: collections.Counter) -> set[str]:
    """Words that end catalog product types covering at least ``MIN_TYPE_PRODUCTS`` products."""
    heads: collections.Counter[str] = collections.Counter()
    for ptype, n in type_counts.items():
        heads[ptype.split()[-1]] += n
    return {h for h, n in heads.items() if n >= MIN_TYPE_PRODUCTS and h.isalpha()}


def modifier_phrases(query: str, pair_titles: collections.Counter, heads: set[str], types: set[str] | None = None) -> list[str]:
    """The title phrases ``q x`` in which the query's last word ``q`` modifies another product noun ``x``.
    With ``types`` (the ``type-phrase`` noun test), ``q x`` must itself be one of the catalog's product types and
    ``q`` a word of letters."""
    words = _WORD.findall(query.casefold())
    if not words or (types is not None and not words[-1].isalpha()):
        return []
    last = words[-1]
    return sorted(f"{q} {x}" for (q, x), n in pair_titles.items()
                  if q == last and n >= MIN_PAIR_TITLES and x in heads and x != last and x not in words and x.isalpha()
                  and (types is None or f"{q} {x}" in types))


def demoted(baseline_clause: dict, phrases: list[str], negative_boost: float, field: str = "title") -> dict:
    """The search body: the baseline, with products whose ``field`` holds one of ``phrases`` scored ``negative_boost`` times."""
    if not phrases or negative_boost == OFF:
        return {"query": baseline_clause}
    negative = {"bool": {"should": [{"match_phrase": {f"{field}.stem": phrase}} for phrase in phrases]}}
    return {"query": {"boosting": {"positive": baseline_clause, "negative": negative, "negative_boost": negative_boost}}}


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch
    from qrw.trainer.catalog import TrainingCatalog

    from qrw.eval.folds import fold_of
    from qrw.eval.metrics import ndcg_at_k
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.catalog import load_catalog
    from qrw.search.runner import search_many

    parser = node_parser(__doc__)
    parser.add_argument("--negative-boosts", default="0.1,0.25,0.5,0.75")
    parser.add_argument("--noun-test", choices=("head-word", "type-phrase"), default="head-word",
                        help="head-word: x ends catalog product types (the first run); type-phrase: 'q x' is itself a "
                             "catalog product type (the variant written down after it)")
    parser.add_argument("--pair-field", choices=("title", "name"), default="title",
                        help="where pairs are counted and phrases matched. title: the first run; name: the product's own "
                             "name, since an Icecat title appends the product type to it and a title pair can straddle that "
                             "seam ('AC Adapter power adapter/inverter' -> 'adapter power'); written down before its run")
    parser.add_argument("--validation", action="store_true", help="also score fold 0 once with the training folds' choice")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    settings = [OFF, *(float(b) for b in args.negative_boosts.split(","))]

    qrels, train = training_queries()
    valid = [q for q in qrels if fold_of(q) == 0]
    products = load_catalog(None)
    pair_titles = title_pairs(getattr(p, args.pair_field) for p in products)
    facets = TrainingCatalog.icecat().facets()
    heads = type_heads(facets.type_counts)
    types = set(facets.types) if args.noun_test == "type-phrase" else None
    client = OpenSearch(args.url, timeout=300)

    def run(queries):
        phrases = {q: modifier_phrases(q, pair_titles, heads, types) for q in queries}
        bodies = {(q, nb): demoted(DEFAULT_BASELINE.clause(q), phrases[q], nb, args.pair_field) for q in queries for nb in settings}
        ranked = search_many(client, args.index, bodies, depth=10, batch_size=50)
        return phrases, {key: ndcg_at_k(ranked[key].ids, qrels[key[0]]) for key in bodies}

    phrases, ndcg = run(train)

    def score(nb, q):
        return ndcg[(q, nb)]

    def best(queries):
        return max(settings, key=lambda nb: (round(statistics.fmean(score(nb, q) for q in queries), 6), nb == OFF))

    folds, held_out = cross_validated(train, best, score, lambda nb: "off" if nb == OFF else f"nb {nb:g}", OFF)
    gains = {q: held_out[q] - score(OFF, q) for q in train}
    chosen = best(train)
    report: dict = {
        "noun_test": args.noun_test, "pair_field": args.pair_field, "train_queries": len(train), "queries_with_modifier_phrases": sum(1 for q in train if phrases[q]),
        "type_heads": len(heads), "baseline_ndcg@10": round(statistics.fmean(score(OFF, q) for q in train), 4),
        "by_negative_boost": {f"{nb:g}": {"ndcg@10": round(statistics.fmean(score(nb, q) for q in train), 4),
                                          "win": sum(score(nb, q) - score(OFF, q) > HARM for q in train),
                                          "harm": sum(score(nb, q) - score(OFF, q) < -HARM for q in train)} for nb in settings},
        "cv": {"folds": folds, "ndcg@10": round(statistics.fmean(held_out.values()), 4),
               "gain": round(statistics.fmean(gains.values()), 4),
               "won": sorted(((q, round(g, 3)) for q, g in gains.items() if g > HARM), key=lambda t: -t[1]),
               "harmed": sorted(((q, round(g, 3)) for q, g in gains.items() if g < -HARM), key=lambda t: t[1])},
        "chosen_on_all_training": "off" if chosen == OFF else chosen,
        "phrases": {q: phrases[q] for q in train if phrases[q]},
    }
    if args.validation:
        valid_phrases, valid_ndcg = run(valid)
        report["validation_once"] = {
            "queries": len(valid), "queries_with_modifier_phrases": sum(1 for q in valid if valid_phrases[q]),
            "baseline_ndcg@10": round(statistics.fmean(valid_ndcg[(q, OFF)] for q in valid), 4),
            "chosen_ndcg@10": round(statistics.fmean(valid_ndcg[(q, chosen)] for q in valid), 4),
            "moved": {q: [round(valid_ndcg[(q, OFF)], 3), round(valid_ndcg[(q, chosen)], 3)] for q in valid
                      if abs(valid_ndcg[(q, chosen)] - valid_ndcg[(q, OFF)]) > HARM},
        }
    report["method"] = {"machine": platform.platform(), "python": platform.python_version(),
                        "opensearch": client.info()["version"]["number"], "baseline": DEFAULT_BASELINE.name,
                        "harm_threshold": HARM, "seconds": round(time.perf_counter() - started, 1)}
    return emit(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
