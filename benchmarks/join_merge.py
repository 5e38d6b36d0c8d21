"""How a joined respelling should be merged: summed beside the user's clause, or as an alternative (``dis_max``).

Why: a joined respelling (``key board`` -> ``keyboard``, ``qrw.plugin.respell``, headroom §20) is another
spelling of the same query, so a ``dis_max`` of the two clauses (a product scores once, by its better
spelling) looked like the principled merge. The plugin serves every respelling as a ``bool.should`` beside
the user's clause (the scores add up). This compares the two on the training folds only, with direct
searches (no model): the split-compound typo set of ``typo_queries.py --edit split`` and the clean queries,
each respelled by the plugin's own request and parser (``suggest_body``, ``respelled``; default settings).

    .venv/bin/python benchmarks/join_merge.py --json docs/eval/join_merge.json

Needs a node with the catalog under the alias ``products`` (``qrw opensearch start``, ``qrw index``).
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_companion import emit
from training_candidates import node_parser, training_queries
from typo_queries import misspell_split

MERGES = ("none", "sum", "dis_max")


def merged(original: dict, respelled_clause: dict | None, merge: str) -> dict:
    """The search body: the user's clause alone, or with the respelled clause summed (``bool.should``, as the plugin
    serves it) or as an alternative (``dis_max``)."""
    if respelled_clause is None or merge == "none":
        return {"query": original}
    if merge == "sum":
        return {"query": {"bool": {"should": [original, respelled_clause], "minimum_should_match": 1}}}
    return {"query": {"dis_max": {"queries": [original, respelled_clause]}}}


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch

    from qrw.eval.metrics import ndcg_at_k
    from qrw.plugin.config import RespellConfig
    from qrw.plugin.respell import respelled, suggest_body
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.runner import search_many

    args = node_parser(__doc__).parse_args(argv)
    started = time.perf_counter()
    qrels, train = training_queries()
    client = OpenSearch(args.url, timeout=120)
    config = RespellConfig()
    sets = {"split": {q: s for q in train if (s := misspell_split(q)) is not None}, "clean": {q: q for q in train}}
    report: dict = {}
    for name, typed in sets.items():
        bodies, joined = {}, {}
        for query, text in typed.items():
            found = respelled(text, client.search(index=args.index, body=suggest_body(text, config)), join_min_docs=config.join_min_docs)
            clause = None
            if found is not None:
                joined[text] = found.text
                inner = DEFAULT_BASELINE.clause(found.text)["multi_match"]
                clause = {"multi_match": {**inner, "operator": "and"}}  # a rewrite needs all its words, as served
            for merge in MERGES:
                bodies[(query, merge)] = merged(DEFAULT_BASELINE.clause(text), clause, merge)
        ranked = search_many(client, args.index, bodies, depth=10, batch_size=50)
        ndcg = {key: ndcg_at_k(ranked[key].ids, qrels[key[0]]) for key in bodies}
        report[name] = {"queries": len(typed), "respelled": joined,
                        "ndcg@10": {m: round(statistics.fmean(ndcg[(q, m)] for q in typed), 4) for m in MERGES}}
    report["method"] = {"queries": "judged training folds (fold != 0)", "respell": config.model_dump(),
                        "machine": platform.platform(), "python": platform.python_version(),
                        "opensearch": client.info()["version"]["number"], "baseline": DEFAULT_BASELINE.name,
                        "seconds": round(time.perf_counter() - started, 1)}
    return emit(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
