"""How closely the trainer's in-process BM25 mirror (``trainer/lexical.py``) ranks like the node.

Why: training labels and GRPO rewards are measured in process, evaluation on the node. This prints,
over the judged development queries, the mirror's top-10 overlap and top-1 agreement with the node
for ``DEFAULT_BASELINE`` (``agreement_with_opensearch``), and, for the same clause with
``operator: and`` (how rewrite clauses go out), how many queries get the node's exact hit count.

    .venv/bin/python benchmarks/mirror_agreement.py

Needs a node with the catalog under the alias ``products`` (``qrw opensearch start``, ``qrw index``).
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv: list[str] | None = None) -> int:
    from qrw.eval.judgments import load_judgments
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.catalog import default_data_dir, load_catalog
    from qrw.search.connect import open_client
    from qrw.search.runner import search_many
    from qrw.trainer.lexical import LexicalIndex, agreement_with_opensearch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--index", default="products")
    args = parser.parse_args(argv)

    client = open_client(args.url)
    queries = list(load_judgments(default_data_dir() / "judgments" / "judgments.csv"))
    mirror = LexicalIndex.from_products(load_catalog(default_data_dir()), DEFAULT_BASELINE)
    report = {"baseline": DEFAULT_BASELINE.name, **agreement_with_opensearch(mirror, client, args.index, queries)}
    all_terms = DEFAULT_BASELINE.model_copy(update={"operator": "and"})
    node = search_many(client, args.index, {q: all_terms.build(q) for q in queries}, depth=10)
    report["operator_and_same_total"] = sum(
        mirror.total(mirror.clause_scores(q, operator="and")) == node[q].total for q in queries)
    report["queries"] = len(queries)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
