"""Do the catalog's own "<modifier> <query head>" title pairs make good label-free rewrites? (measured, not built)

Why: the exhaustive ceiling of ``vocabulary_ceiling.py`` shows that many of the catalog phrases that
would help a query, and retrieve what it means, narrow the query's last word to a common kind of it
(``mouse`` -> ``laser mouse``, ``keyboard`` -> ``usb keyboard``, ``phone charger`` -> ``car charger``).
A source that needs no model and no labels would propose exactly those: the title word pairs that end
with the query's last word, most frequent first, and serve them to every query that has one.

Method, as written down before the run: for a query whose last word ``w`` heads title word pairs
``x w`` (``x`` alphabetic and not a query word, found in at least 3 titles, passing the plugin's
guards with the index's brands), the ``k`` most frequent are served, merged ``bool.should[baseline,
text mirror(x w)^b, ...]``. Grid ``k`` in {1, 2, 3} x ``b`` in {0.1, 0.3, 0.5}; 4-fold cross-validation
inside the training folds (each fold's setting picked on the other three; "serve nothing" is a
setting). Worth building only if the CV gain is at least +0.010 nDCG@10 with at most 5 % of the
training queries harmed (drop > 0.05). The validation fold is never searched.

    .venv/bin/python benchmarks/head_specializations.py --json docs/eval/head_specializations.json
"""

from __future__ import annotations

import collections
import itertools
import platform
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_companion import cross_validated, emit
from training_candidates import node_parser, training_queries

HARM = 0.05
MIN_DF = 3
GRID = [(k, b) for k in (1, 2, 3) for b in (0.1, 0.3, 0.5)]
NOTHING = (0, 0.0)
_WORD = re.compile(r"\w+", re.UNICODE)


def title_pairs(titles) -> collections.Counter:
    """How many titles hold each pair of adjacent words (lowercased); also read by ``compound_head.py``."""
    counts: collections.Counter = collections.Counter()
    for title in titles:
        counts.update(set(itertools.pairwise(_WORD.findall(title.casefold()))))
    return counts


def specializations(query: str, pair_df: collections.Counter, allowed) -> list[str]:
    """The title word pairs ``x w`` that end with the query's last word ``w``, most frequent first."""
    words = _WORD.findall(query.casefold())
    if not words:
        return []
    ranked = sorted(((n, f"{x} {w}") for (x, w), n in pair_df.items()
                     if w == words[-1] and n >= MIN_DF and x.isalpha() and x not in words), key=lambda t: (-t[0], t[1]))
    return [pair for _, pair in ranked if allowed(query, pair)]


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch
    from qrw.plugin import guards
    from qrw.plugin.config import GuardConfig

    from qrw.eval.metrics import ndcg_at_k
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.catalog import load_catalog
    from qrw.search.runner import search_many

    args = node_parser(__doc__).parse_args(argv)
    started = time.perf_counter()

    qrels, train = training_queries()
    products = load_catalog(None)
    pair_df = title_pairs(p.title for p in products)
    config = GuardConfig()
    brands = guards.load_brands(config, extra=sorted({p.supplier for p in products if p.supplier}))
    proposed = {q: specializations(q, pair_df, lambda q, p: guards.check(q, [p], config, brands)[0] is None)[:3] for q in train}

    mirror = DEFAULT_BASELINE.model_copy(update={"operator": "and"})
    bodies = {(q, *NOTHING): DEFAULT_BASELINE.build(q) for q in train}
    for q in train:
        for k, b in GRID:
            bodies[(q, k, b)] = {"query": {"bool": {"should": [DEFAULT_BASELINE.clause(q),
                                                               *(mirror.clause(p, boost=b) for p in proposed[q][:k])]}}}
    client = OpenSearch(args.url, timeout=300)
    ranked = search_many(client, args.index, bodies, depth=10, batch_size=50)
    ndcg = {key: ndcg_at_k(ranked[key].ids, qrels[key[0]]) for key in bodies}

    def score(setting, q):
        return ndcg[(q, *setting)]

    def best(queries):
        return max([NOTHING, *GRID], key=lambda s: (statistics.fmean(score(s, q) for q in queries), s == NOTHING))

    folds, held_out = cross_validated(train, best, score, lambda s: "nothing" if s == NOTHING else f"k={s[0]} b={s[1]:g}", NOTHING)
    base = {q: score(NOTHING, q) for q in train}
    gains = {q: held_out[q] - base[q] for q in train}
    report = {
        "train_queries": len(train), "queries_with_a_specialization": sum(1 for q in train if proposed[q]),
        "baseline_ndcg@10": round(statistics.fmean(base.values()), 4),
        "grid": {f"k={k} b={b:g}": {"mean_gain": round(statistics.fmean(score((k, b), q) - base[q] for q in train), 4),
                                    "win": sum(score((k, b), q) - base[q] > HARM for q in train),
                                    "harm": sum(score((k, b), q) - base[q] < -HARM for q in train)} for k, b in GRID},
        "cv": {"folds": folds, "gain": round(statistics.fmean(gains.values()), 4),
               "win": sum(g > HARM for g in gains.values()), "harm": sum(g < -HARM for g in gains.values())},
        "proposed": {q: proposed[q] for q in train if proposed[q]},
        "method": {"machine": platform.platform(), "python": platform.python_version(),
                   "opensearch": client.info()["version"]["number"], "baseline": DEFAULT_BASELINE.name,
                   "harm_threshold": HARM, "min_df": MIN_DF, "seconds": round(time.perf_counter() - started, 1)},
    }
    return emit(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
