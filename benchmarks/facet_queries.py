"""Do the model's relaxations lose what a shopper asked for? Label-free facet queries, scored by intent.

Why: the shipped gate serves down-weighted *relaxations* (``usb stick 64gb`` -> ``usb stick``, ``toner for
brother printer`` -> ``toner printer``). The guards that would drop them (``guards.keep_numbers``,
``guards.keep_brand``) are off by default on the argument that the user's own clause keeps the brand or
size. Reading shopper queries by eye (``chain_probe.py``) showed relaxations pushing 64 GB flash drives
below card readers and A4 paper below printers. This measures it on many queries, with no judgments:

* queries are built from the catalog itself (``trainer.facets``): (a) a product type with a number and
  unit that at least ``--min-products`` products of that type state (``usb flash drive 64gb``), and (b) a
  brand with a product type it sells (``brother toner``); at most two per type, none a judged query;
* each product is graded for the query's intent with ``trainer.facets.grade_for_intent`` (3: the type and
  every facet asked; 1: the type only; 0: another type), so the ideal top 10 holds products of the type
  with the brand or number asked, and no single product is "the" answer;
* systems, all through the drop-in client with the profile's baseline body: the plain baseline, the
  shipped chain (model, guards, calibrated gate, respelling; the model's ``serving.yaml``), and the
  shipped chain with ``guards.keep_numbers`` or ``guards.keep_brand`` on.

Reported per set: mean pseudo-nDCG@10, queries harmed and helped against the baseline (a change beyond
±0.05), and the rewrites served. The decision rule was written before the first run (stop 30's note).

    .venv/bin/python benchmarks/facet_queries.py --json docs/eval/facet_queries.json

Needs a node with the catalog under the alias ``products`` (``qrw opensearch start``, ``qrw index``).
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chain_probe import served  # noqa: E402

HARM = 0.05


def user_value(value: str) -> str:
    """How a shopper writes a normalised value: ``27inch`` -> ``27 inch``, ``8port`` -> ``8 port``; ``64gb`` stays."""
    for word in ("inch", "port"):
        if value.endswith(word):
            return value[: -len(word)] + " " + word
    return value


def facet_queries(facets, judged: set[str], *, min_products: int, min_type: int, per_type: int,
                  limit: int) -> dict[str, list[dict]]:
    """The two label-free sets: type + number (``numbers``) and brand + type (``brands``)."""
    by_type_value: collections.Counter = collections.Counter()
    by_brand_type: collections.Counter = collections.Counter()
    for item in facets.by_id.values():
        if not item.product_type:
            continue
        for value in item.values:
            if value[:1].isdigit():
                by_type_value[(item.product_type, value)] += 1
        if item.brand:
            by_brand_type[(item.brand, item.product_type)] += 1
    sets: dict[str, list[dict]] = {"numbers": [], "brands": []}
    for name, counts, make in (
        ("numbers", by_type_value, lambda t, v: {"query": f"{t} {user_value(v)}", "type": t, "brand": None, "values": [v]}),
        ("brands", by_brand_type, lambda b, t: {"query": f"{b.casefold()} {t}", "type": t, "brand": b, "values": []}),
    ):
        taken: collections.Counter = collections.Counter()
        for (first, second), count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
            spec = make(first, second)
            ptype = spec["type"]
            if count < min_products or facets.type_counts[ptype] < min_type or taken[ptype] >= per_type:
                continue
            if spec["query"] in judged or count >= facets.type_counts[ptype]:  # a facet every product of the type has
                continue
            taken[ptype] += 1
            sets[name].append({**spec, "products": count})
            if len(sets[name]) >= limit:
                break
    return sets


def served_texts(report: dict | None) -> list[str]:
    """What the chain served (``chain_probe.served``), as ``text (action)``."""
    return [f"{item['text']} ({item['action']})" for item in served(report)]


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch

    from qrw.eval.metrics import ndcg_at_k
    from qrw.plugin import RewritingOpenSearch, model_store
    from qrw.plugin.config import load_config
    from qrw.plugin.engine import load_model
    from qrw.search.catalog import default_data_dir, load_catalog
    from qrw.search.profile import load_profile
    from qrw.trainer.facets import CatalogFacets, grade_for_intent

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--index", default="products")
    parser.add_argument("--model", default="default")
    parser.add_argument("--per-set", type=int, default=60)
    parser.add_argument("--per-type", type=int, default=2)
    parser.add_argument("--min-products", type=int, default=5)
    parser.add_argument("--min-type", type=int, default=20, help="types with fewer products are skipped")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    products = load_catalog(default_data_dir())
    facets = CatalogFacets(products)
    with (default_data_dir() / "judgments" / "judgments.csv").open(newline="") as handle:
        judged = {row["query"].casefold() for row in csv.DictReader(handle)}
    sets = facet_queries(facets, judged, min_products=args.min_products, min_type=args.min_type,
                         per_type=args.per_type, limit=args.per_set)

    profile = load_profile()
    shipped = load_config(None, shipped=model_store.shipped_serving(args.model))
    shipped = shipped.model_copy(update={"chain": shipped.chain.model_copy(update={"deadline_ms": 60_000.0})})
    variants = {
        "shipped": shipped,
        "keep_numbers": shipped.model_copy(update={"guards": shipped.guards.model_copy(update={"keep_numbers": True})}),
        "keep_brand": shipped.model_copy(update={"guards": shipped.guards.model_copy(update={"keep_brand": True})}),
    }
    model = load_model(args.model)
    plain = OpenSearch(args.url)
    clients = {name: RewritingOpenSearch(args.url, config=config, model=model) for name, config in variants.items()}
    systems = ["baseline", *variants]
    rows: dict[str, list[dict]] = {name: [] for name in sets}
    try:
        for set_name, specs in sets.items():
            for spec in tqdm(specs, desc=set_name, unit="query"):
                grades = {pid: g for pid, item in facets.by_id.items()
                          if (g := grade_for_intent(item, spec["type"], spec["brand"], spec["values"])) > 0}
                body = {**profile.baseline.build(spec["query"]), "size": 10, "_source": False}
                row = {**spec, "ndcg@10": {}, "served": {}}
                for system in systems:
                    if system == "baseline":
                        answer = plain.search(index=args.index, body=body)
                    else:
                        answer = clients[system].search(index=args.index, body=body, headers={"X-QRW-Explain": "true"})
                        row["served"][system] = served_texts(answer.get("qrw"))
                    ranked = [hit["_id"] for hit in answer["hits"]["hits"]]
                    row["ndcg@10"][system] = round(ndcg_at_k(ranked, grades, 10), 4)
                rows[set_name].append(row)
    finally:
        for client in clients.values():
            client.close()

    summary: dict = {}
    for set_name, set_rows in rows.items():
        base = [r["ndcg@10"]["baseline"] for r in set_rows]
        per_system = {}
        for system in systems:
            scores = [r["ndcg@10"][system] for r in set_rows]
            deltas = [s - b for s, b in zip(scores, base)]
            per_system[system] = {
                "mean_ndcg@10": round(statistics.fmean(scores), 4) if scores else None,
                "harmed": sum(d < -HARM for d in deltas), "helped": sum(d > HARM for d in deltas),
                "queries_with_a_served_rewrite": sum(bool(r["served"].get(system)) for r in set_rows) if system != "baseline" else 0,
            }
        summary[set_name] = {"queries": len(set_rows), "systems": per_system}
        print(f"\n{set_name}: {len(set_rows)} queries")
        for system, figures in per_system.items():
            print(f"  {system:13} nDCG@10 {figures['mean_ndcg@10']:.4f}  harmed {figures['harmed']:3}  helped "
                  f"{figures['helped']:3}  with a served rewrite {figures['queries_with_a_served_rewrite']}")
        changed = [r for r in set_rows if len({r["ndcg@10"][s] for s in systems}) > 1]
        for r in sorted(changed, key=lambda r: r["ndcg@10"]["shipped"] - r["ndcg@10"]["baseline"])[:40]:
            scores = " ".join(f"{r['ndcg@10'][s]:.3f}" for s in systems)
            print(f"    {r['query']!r:38} {scores}  shipped serves {r['served'].get('shipped')}")
    if args.json:
        report = {"summary": summary, "rows": rows, "method": {
            "systems": systems, "harm": HARM, "model": clients["shipped"].qrw.model_name, "index": args.index,
            "per_set": args.per_set, "per_type": args.per_type, "min_products": args.min_products,
            "min_type": args.min_type, "machine": platform.platform(), "python": platform.python_version(),
            "seconds": round(time.perf_counter() - started, 1)}}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
