"""What the serving chain does with a list of queries: each model candidate, its tags, and the verdict.

Why: averages over judged queries hide what a shopper would see. This runs the same chain the proxy
and the wrapper run (model, guards, calibrated gate, rules; the model folder's ``serving.yaml``), with
no OpenSearch and no judgments, so it works for any query list: queries outside the catalog's
domain, user vocabulary the catalog does not use, or a team's own head queries before adopting.
It prints one line per query and a summary (queries with a candidate, with a served rewrite, served
rewrites by gate action and by what dropped the others).

    .venv/bin/python benchmarks/served_rewrites.py --queries benchmarks/queries/probe_not_judged.txt \
        --json docs/eval/served_rewrites_probe.json
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from qrw.plugin import model_store
    from qrw.plugin.config import load_config
    from qrw.plugin.engine import RewriteEngine, load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=Path, required=True, help="one query per line ('#' starts a comment)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--config", type=Path, default=None, help="a plugin config layered over the model's serving.yaml")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    queries = [line.split("#", 1)[0].strip() for line in args.queries.read_text().splitlines()]
    queries = [q for q in queries if q]
    if not queries:
        parser.error(f"{args.queries} holds no queries")
    config = load_config(args.config, shipped=model_store.shipped_serving(args.model))
    engine = RewriteEngine(config, load_model(args.model))
    rows = []
    started = time.perf_counter()
    for query in queries:
        result = engine.rewrite_query(query, explain=True, deadline_ms=60_000)  # no deadline: see what the model says
        candidates = [{
            "rewrite": c.text,
            "verdict": c.dropped_by or (c.decision.action if c.decision else "none"),
            "weight": c.decision.weight if c.decision and c.kept else 0.0,
            "tags": {k: round(v, 3) for k, v in (c.probabilities or {}).items()},
        } for c in result.candidates]
        rows.append({"query": query, "served": [c.text for c in result.kept], "candidates": candidates})
        shown = "; ".join(f"{c['rewrite']!r} {c['verdict']}" + (f" x{c['weight']:g}" if c["weight"] else "") for c in candidates) or "(no rewrite proposed)"
        print(f"{query!r:32} {shown}")
    verdicts = collections.Counter(str(c["verdict"]).split(":")[0] for row in rows for c in row["candidates"])
    summary = {
        "queries": len(rows),
        "with_a_candidate": sum(bool(r["candidates"]) for r in rows),
        "with_a_served_rewrite": sum(bool(r["served"]) for r in rows),
        "candidates_by_verdict": dict(verdicts),
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        report = {"summary": summary, "rows": rows, "method": {
            "model": engine.model_name, "queries_file": str(args.queries), "gate": str(config.gate),
            "propose": config.chain.propose, "machine": platform.platform(), "python": platform.python_version(),
            "seconds": round(time.perf_counter() - started, 1)}}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
