"""What index respelling does with a list of queries: the suggester's offers, the respelling served, and the top 5.

Why: the typo sets of ``typo_queries.py`` measure what respelling recovers; a correctly spelled query
that the catalog does not know (``frying pan``, ``thumb drive``) shows what it could break. This runs
the plugin's own path (``suggest_body``, ``RewriteEngine.respell_answer`` and ``rewrite_body``, no model,
the default ``respell`` settings) against the index for any query list, and writes per query:

* every word the index does not hold, with the suggester's offers, each with its document frequency
  and whether it passes the typo test with and without vowel slips (``qrw.plugin.respell.plausible_typo``);
* the respelling served, if any;
* whether the top 5 of the baseline query with the respelling merged differs from the baseline's own, and
  both top 5s' titles;
* the documents holding each adjacent pair of words joined and as a phrase (``respell.join_split_words``).

    .venv/bin/python benchmarks/respell_probe.py --queries benchmarks/queries/probe_not_judged.txt \
        benchmarks/queries/everyday_electronics.txt benchmarks/queries/misspelled_by_hand.txt \
        benchmarks/queries/misspelled_vowels_by_hand.txt benchmarks/queries/split_compounds_by_hand.txt \
        --training-queries --json docs/eval/respell_probe.json
    .venv/bin/python benchmarks/respell_probe.py --query "micro sd card" --query "head set" --json docs/eval/respell_probe_joined_judged.json

Needs a node with the catalog under the alias ``products`` (``qrw opensearch start``, ``qrw index``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def training_lists() -> dict[str, list[str]]:
    """The judged training-fold queries (fold != 0), as written and with each typo set's edit."""
    import csv

    from qrw.eval.folds import fold_of
    from qrw.search.catalog import default_data_dir
    from typo_queries import misspell, misspell_vowel

    with (default_data_dir() / "judgments" / "judgments.csv").open(newline="") as handle:
        clean = sorted({r["query"] for r in csv.DictReader(handle) if fold_of(r["query"]) != 0})
    return {"training folds, as written": clean,
            "training folds, misspell": [t for t in map(misspell, clean) if t is not None],
            "training folds, misspell_vowel": [t for t in map(misspell_vowel, clean) if t is not None]}


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch

    from qrw.plugin.config import PluginConfig
    from qrw.plugin.engine import RespellAsk, RewriteEngine
    from qrw.plugin.respell import JOIN_NAME, SUGGEST_NAME, plausible_typo, suggest_body, worth_asking
    from qrw.search.baseline import DEFAULT_BASELINE

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=Path, nargs="*", default=[], help="files, one query per line ('#': comment)")
    parser.add_argument("--query", action="append", default=[], help="a query given here (repeatable)")
    parser.add_argument("--training-queries", action="store_true",
                        help="also the judged training-fold queries (never the validation fold): as written, and "
                             "misspelled by typo_queries.py's two label-free edits (misspell, misspell_vowel)")
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--index", default="products")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    client = OpenSearch(args.url, timeout=60)
    engine = RewriteEngine(PluginConfig(), None)
    report: dict = {"files": {}, "method": {"index": args.index, "respell": PluginConfig().respell.model_dump(),
                                            "baseline": DEFAULT_BASELINE.name, "top": 5}}
    lists = {str(path): [q for q in (line.split("#", 1)[0].strip() for line in path.read_text().splitlines()) if q]
             for path in args.queries}
    if args.query:
        lists["--query"] = args.query
    if args.training_queries:
        lists.update(training_lists())
    if not lists:
        parser.error("give --queries files, --query, --training-queries, or several")
    for path, queries in lists.items():
        rows = []
        for query in queries:
            body = {**DEFAULT_BASELINE.build(query), "size": 5, "_source": False}
            text = engine.rewritable_text(body)  # asked every time: respell_ask would skip a text seen in another list
            ask = RespellAsk(text, suggest_body(text, engine.config.respell), args.index)
            answer = client.search(index=args.index, body=ask.body) if worth_asking(text, engine.config.respell) else {}
            respelling = engine.respell_answer(ask, answer) if answer else None
            offers = [{"word": entry["text"], "offers": [
                {"text": o["text"], "freq": o["freq"], "typo": plausible_typo(entry["text"], o["text"]),
                 "typo_without_vowel_slips": plausible_typo(entry["text"], o["text"], vowel_slips=False),
                 "typo_without_sound_slips": plausible_typo(entry["text"], o["text"], sound_slips=False)}
                for o in entry["options"]]} for entry in answer.get("suggest", {}).get(SUGGEST_NAME, []) if entry["options"]]
            row = {"query": query, "respelled": respelling.text if respelling else None, "unknown_words": offers}
            counts = answer.get("aggregations", {}).get(JOIN_NAME, {}).get("buckets")
            if counts:  # documents holding each adjacent pair joined and as a phrase (respell.join_split_words)
                row["join_counts"] = {key: bucket["doc_count"] for key, bucket in counts.items()}
            if respelling is not None:
                merged, _ = engine.rewrite_body(body, index=args.index)
                hits = [client.search(index=args.index, body={**b, "_source": ["title"]})["hits"]["hits"] for b in (body, merged)]
                row["top5_changed"] = [h["_id"] for h in hits[0]] != [h["_id"] for h in hits[1]]
                row["top5_titles"] = {"baseline": [h["_source"].get("title") for h in hits[0]],
                                      "respelled": [h["_source"].get("title") for h in hits[1]]}
            rows.append(row)
            shown = ", ".join(f"{w['word']}: " + "/".join(f"{o['text']}({o['freq']}{'*' if o['typo'] else ''})" for o in w["offers"])
                              for w in offers)
            joins = " ".join(f"{k}={n}" for k, n in row.get("join_counts", {}).items())
            print(f"{query!r:28} -> {row['respelled']!s:28} {'top 5 changed' if row.get('top5_changed') else ''}  [{shown}]"
                  + (f"  {{{joins}}}" if joins else ""))
        summary = {"queries": len(rows), "respelled": sum(r["respelled"] is not None for r in rows),
                   "top5_changed": sum(bool(r.get("top5_changed")) for r in rows)}
        print(f"{path}: {summary}")
        report["files"][path] = {"summary": summary, "rows": rows}
    engine.close()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
