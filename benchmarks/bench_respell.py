"""What index respelling costs OpenSearch: the suggest request beside the search it comes before.

Why: with ``respell.enabled`` (the default) the proxy and the clients send one suggest request
(``qrw.plugin.respell.suggest_body``: a term suggester with ``suggest_mode: missing``, and, with
``respell.join_split_words`` (the default since stop 29), a ``filters`` aggregation counting each adjacent
word pair joined and as a phrase, over only the documents holding one of them; ``match_none`` otherwise) for every query text they have not seen within the cache TTL, before the search. This
measures that request against the search itself, on the same node, for the same texts, interleaved.

Method: the judged training-fold queries, correctly spelled and with the label-free misspelling of
``typo_queries.py``; for each round and each text, the suggest request and the shipped baseline's
search (``DEFAULT_BASELINE.build``, size 10) are timed back to back on
one keep-alive connection with opensearch-py, beside the same suggest request without the join counts (each of the
three first, second and third in turn); the figure is the client-side round trip. Medians and
p95 over all (round, text) pairs; the ratio is suggest over search. The node's request cache is off
for both (``request_cache=false``), so repeated rounds measure the work, not a cached answer.

    .venv/bin/python benchmarks/bench_respell.py --json docs/bench/bench_respell.json

Needs a node with the catalog under the alias ``products`` (``qrw opensearch start``, ``qrw index``).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from typo_queries import misspell  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100.0 * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    import opensearchpy
    from opensearchpy import OpenSearch

    from qrw.eval.folds import fold_of
    from qrw.plugin.config import RespellConfig
    from qrw.plugin.respell import suggest_body
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.catalog import default_data_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--index", default="products")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    with (default_data_dir() / "judgments" / "judgments.csv").open(newline="") as handle:
        clean = sorted({r["query"] for r in csv.DictReader(handle) if fold_of(r["query"]) != 0})
    texts = clean + [t for t in (misspell(q) for q in clean) if t is not None]
    config = RespellConfig()
    plain = RespellConfig(join_split_words=False)  # the suggest request before stop 29: no join counts
    client = OpenSearch(args.url, timeout=60)
    for text in texts[:10]:  # warm the connection and the node's code paths
        client.search(index=args.index, body=suggest_body(text, config))
        client.search(index=args.index, body={**DEFAULT_BASELINE.build(text), "size": 10})
    params = {"request_cache": "false"}
    timings: dict[str, list[float]] = {"suggest": [], "suggest_without_join": [], "search": []}
    by_text: dict[tuple[str, str], list[float]] = {}
    for round_no in range(args.rounds):
        for i, text in enumerate(texts):
            trio = [("suggest", suggest_body(text, config)), ("suggest_without_join", suggest_body(text, plain)),
                    ("search", {**DEFAULT_BASELINE.build(text), "size": 10})]
            shift = (round_no + i) % 3  # each request goes first, second and third equally often
            for name, body in trio[shift:] + trio[:shift]:
                started = time.perf_counter()
                client.search(index=args.index, body=body, params=params)
                timings[name].append((time.perf_counter() - started) * 1000.0)
                by_text.setdefault((name, text), []).append(timings[name][-1])
    result = {name: {"median_ms": round(statistics.median(v), 3), "p95_ms": round(percentile(v, 95), 3), "n": len(v)}
              for name, v in timings.items()}
    result["suggest_over_search_median"] = round(result["suggest"]["median_ms"] / result["search"]["median_ms"], 3)
    result["suggest_without_join_over_search_median"] = round(result["suggest_without_join"]["median_ms"] / result["search"]["median_ms"], 3)
    # the texts whose join counts cost most: median with the counts minus median without, per text
    join_cost = {text: statistics.median(by_text[("suggest", text)]) - statistics.median(by_text[("suggest_without_join", text)])
                 for text in texts}
    result["join_counts_costliest_texts_ms"] = {text: round(cost, 3) for text, cost in
                                                sorted(join_cost.items(), key=lambda kv: -kv[1])[:5]}
    result["method"] = {
        "texts": f"{len(clean)} judged training-fold queries and {len(texts) - len(clean)} misspelled copies",
        "rounds": args.rounds, "interleaved": True, "client": f"opensearch-py {opensearchpy.__version__}",
        "machine": platform.platform(), "python": platform.python_version(), "node": client.info()["version"]["number"],
        "suggester": suggest_body("x", config)["suggest"]["qrw_respell"]["term"],
        "join_split_words": config.join_split_words,
        "index": args.index, "documents": client.count(index=args.index)["count"],
    }
    for name in ("suggest", "suggest_without_join", "search"):
        print(f"{name:20s} median {result[name]['median_ms']:.3f} ms  p95 {result[name]['p95_ms']:.3f} ms  (n={result[name]['n']})")
    print(f"suggest / search (medians): {result['suggest_over_search_median']:.3f}; without the join counts: "
          f"{result['suggest_without_join_over_search_median']:.3f}")
    print("join counts, costliest texts (median ms with minus without):", result["join_counts_costliest_texts_ms"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
