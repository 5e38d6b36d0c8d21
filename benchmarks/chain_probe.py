"""What a shopper would see: each query's top 5 from the baseline and from the whole serving chain, side by side.

Why: ``served_rewrites.py`` shows the model's rewrites without an index, and ``respell_probe.py`` shows index
respelling without the model. This sends each query the way an adopter's code would, through the drop-in
client (``qrw.plugin.RewritingOpenSearch``: model, guards, gate, index respelling, zero-hit retry, the
model's shipped ``serving.yaml``), with the index profile's baseline body, next to the same body sent by a
plain client; and records, per query, what the chain served (``X-QRW-Explain``) and both top 5s' titles.
It needs no judgments, so any query list works: the point is to read the changed lists by eye.

    .venv/bin/python benchmarks/chain_probe.py --queries benchmarks/queries/shopper_phrasings.txt \
        --json docs/eval/chain_probe_shopper.json

Needs a node with the catalog under the alias ``products`` (``qrw opensearch start``, ``qrw index``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path


def served(report: dict | None) -> list[dict]:
    """What the chain merged into the search, from its explain report: the kept rewrites (weight above 0) and
    the index respelling."""
    report = report or {}
    out = [{"text": item.get("text"), "action": item.get("action"), "weight": item.get("weight")}
           for item in report.get("rewrites", []) if (item.get("weight") or 0) > 0]
    respelling = report.get("respelling")
    if respelling:
        out.append({"text": respelling.get("text"), "action": "respelling", "weight": respelling.get("weight")})
    return out


def titles(response: dict, field: str, k: int) -> list[str]:
    return [str(hit.get("_source", {}).get(field, hit.get("_id"))) for hit in response["hits"]["hits"][:k]]


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch

    from qrw.plugin import RewritingOpenSearch, model_store
    from qrw.plugin.config import load_config
    from qrw.plugin.engine import load_model
    from qrw.search.profile import load_profile

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=Path, nargs="*", default=[], help="one query per line ('#' starts a comment)")
    parser.add_argument("--query", action="append", default=[], help="a query (repeatable)")
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--index", default="products")
    parser.add_argument("--model", default="default")
    parser.add_argument("--config", type=Path, default=None, help="a plugin config layered over the model's serving.yaml")
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--deadline-ms", type=float, default=60_000.0,
                        help="the model's budget per request (serving ships 150 ms; a probe waits for its answer)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    queries = list(args.query)
    for path in args.queries:
        queries += [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    queries = list(dict.fromkeys(q for q in queries if q))
    if not queries:
        parser.error("no queries: give --queries FILE or --query TEXT")

    profile = load_profile()
    config = load_config(args.config, shipped=model_store.shipped_serving(args.model))
    config = config.model_copy(update={"chain": config.chain.model_copy(update={"deadline_ms": args.deadline_ms})})
    plain = OpenSearch(args.url)
    chain = RewritingOpenSearch(args.url, config=config, model=load_model(args.model))
    rows = []
    started = time.perf_counter()
    try:
        for query in queries:
            body = profile.baseline.build(query)
            before = plain.search(index=args.index, body={**body, "size": args.top})
            after = chain.search(index=args.index, body={**body, "size": args.top}, headers={"X-QRW-Explain": "true"})
            row = {"query": query, "served": served(after.get("qrw")),
                   "hits": [before["hits"]["total"]["value"], after["hits"]["total"]["value"]],
                   "before": titles(before, profile.title_field, args.top),
                   "after": titles(after, profile.title_field, args.top)}
            row["changed"] = row["before"] != row["after"]
            row["zero_hit_retry"] = bool(((after.get("qrw") or {}).get("recovery") or {}).get("hits"))
            rows.append(row)
            mark = "*" if row["changed"] else " "
            shown = "; ".join(f"{s['text']!r} {s['action']}" for s in row["served"]) or "-"
            shown += "  [zero hits: fuzzy retry answered]" if row["zero_hit_retry"] else ""
            print(f"{mark} {query!r:34} {shown}")
            if row["changed"]:
                for i, (b, a) in enumerate(zip(row["before"] + [""] * args.top, row["after"] + [""] * args.top)):
                    if i < args.top:
                        print(f"      {b[:58]:58} | {a[:58]}")
    finally:
        chain.close()
    summary = {"queries": len(rows), "with_a_served_rewrite": sum(bool(r["served"]) for r in rows),
               "top_changed": sum(r["changed"] for r in rows), "zero_hit_retries": sum(r["zero_hit_retry"] for r in rows)}
    print(json.dumps(summary))
    if args.json:
        report = {"summary": summary, "rows": rows, "method": {
            "model": chain.qrw.model_name, "index": args.index, "top": args.top, "queries_files": [str(p) for p in args.queries],
            "machine": platform.platform(), "python": platform.python_version(),
            "seconds": round(time.perf_counter() - started, 1)}}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
