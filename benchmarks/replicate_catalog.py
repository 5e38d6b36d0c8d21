"""Index the catalog N times over under one alias: a larger index with the catalog's own word statistics.

Why: request costs that grow with the postings they visit (index respelling's join counts, the baseline's
search) cannot be judged on 19k products alone. Copies keep every word's share of documents, every
phrase's, and so every decision the counts lead to, while the postings grow N times; a benchmark run
against ``products`` and ``products_x{N}`` in one session shows how a cost scales.

    .venv/bin/python benchmarks/replicate_catalog.py --copies 10
    .venv/bin/python benchmarks/bench_respell.py --index products_x10

Copies get ids ``{id}-r{k}``; the mapping is the shipped Icecat profile's, so the baseline runs unchanged.
Needs a running node (``qrw opensearch start``). Indexing 10 copies (194k products) took about 4 min on a
2-core machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from qrw.search.catalog import default_data_dir, load_catalog
    from qrw.search.connect import open_client
    from qrw.search.index import index_documents
    from qrw.search.profile import load_profile

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--alias", default=None, help="default: products_x{copies}")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.copies < 1:
        parser.error("--copies must be at least 1")

    profile = load_profile()
    products = load_catalog(default_data_dir())
    documents = []
    for k in range(args.copies):
        for product in products:
            doc = product.to_document()
            doc[profile.id_field] = f"{doc[profile.id_field]}-r{k}"
            documents.append(doc)
    started = time.perf_counter()
    result = index_documents(open_client(args.url), documents, profile, args.alias or f"products_x{args.copies}",
                             url=args.url)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
