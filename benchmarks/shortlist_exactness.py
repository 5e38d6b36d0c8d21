"""Does the shortlist head change anything the runtime reads? (the check behind ``--shortlist-head``)

Why: the export's shortlist head (``export/builder.py``) scores only the tokens a 4-bit copy of the
LM head ranks highest, plus the tag tokens, in fp32. That is exact for what serving reads (the greedy
token, the in-graph top 16, the tag logits) only while every true top-16 token lands in the
shortlist. This exports the model twice (shortlist head and plain fp32 head, cached in
``--models-dir``) and compares on the judged development queries plus the first ``--pseudo``
held-out pseudo-queries of a data build:

* greedy decoding without any stop rule up to the token cap (every step's argmax),
* the in-graph top-16 ids at each prompt's last position,
* the served path: ``rewrite_outputs`` (rewrite lists, their tags, the ``none`` stop),
* tag probabilities of judged (query, product title) pairs through ``model.tag``.

    .venv/bin/python benchmarks/shortlist_exactness.py --data-dir runs/v2/data --targets runs/v2/data/rewrite_train.jsonl
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runtime import VARIANTS, ensure_exports, fingerprint, judged_pairs, merged_checkpoint  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from qrw.plugin import model_store
    from qrw.plugin.prompt import TAGS, rewrite_prompt
    from qrw.plugin.runtime import load_model

    from qrw.search.catalog import default_data_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(model_store.DEFAULT_ADAPTER), help="adapter or checkpoint folder")
    parser.add_argument("--data-dir", type=Path, required=True, help="a `qrw train data` output (its rewrite_valid.jsonl)")
    parser.add_argument("--pseudo", type=int, default=1500)
    parser.add_argument("--shortlist", type=int, default=1024)
    parser.add_argument("--models-dir", type=Path, default=None, help="exports, shared with bench_runtime.py [default: $QRW_CACHE_DIR/bench]")
    parser.add_argument("--targets", default=None, help="the trainer's rewrite_train.jsonl, for the exports' token cap")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    with (default_data_dir() / "judgments" / "judgments.csv").open() as handle:
        queries = sorted({row["query"] for row in csv.DictReader(handle)})
    with (args.data_dir / "rewrite_valid.jsonl").open() as handle:
        queries += [json.loads(line)["query"] for _, line in zip(range(args.pseudo), handle)]
    pairs = judged_pairs()

    # the exports of bench_runtime.py (same variants, same cache): plain fp32 head and the shortlist head
    models_dir = (args.models_dir or Path(os.environ.get("QRW_CACHE_DIR", Path.home() / ".cache" / "qrw")) / "bench").expanduser()
    models_dir.mkdir(parents=True, exist_ok=True)
    short_name = f"qrw-fp32-shortlist{args.shortlist}"
    VARIANTS[short_name] = {"graph": "qrw", "shortlist_head": args.shortlist}
    source = merged_checkpoint(args.model, models_dir)
    folders = ensure_exports(source, models_dir / f"{Path(source).name}-{fingerprint(source)}", ["qrw-fp32-plain", short_name], args.targets)
    plain = load_model(folders["qrw-fp32-plain"], threads=args.threads)
    short = load_model(folders[short_name], threads=args.threads)

    steps = greedy_differ = top_differ = 0
    for start in range(0, len(queries), 32):
        encoded = plain._encode([rewrite_prompt(q) for q in queries[start : start + 32]])
        a, _ = plain._greedy(encoded, plain.max_new_tokens, 0, stop_at_newline=False)
        b, _ = short._greedy(encoded, plain.max_new_tokens, 0, stop_at_newline=False)
        steps += sum(len(s) for s in a)
        greedy_differ += sum(x != y for x, y in zip(a, b))
        ids, mask, pos = plain._pad(encoded)
        (top_a,), _ = plain._run(("top_ids",), ids, mask, pos, plain._empty_past(len(ids)))
        (top_b,), _ = short._run(("top_ids",), ids, mask, pos, short._empty_past(len(ids)))
        top_differ += int((top_a != top_b).any(axis=1).sum())

    served_a = [o for s in range(0, len(queries), 16) for o in plain.rewrite_outputs(queries[s : s + 16], 3)]
    served_b = [o for s in range(0, len(queries), 16) for o in short.rewrite_outputs(queries[s : s + 16], 3)]
    lists_differ = sum(x.rewrites != y.rewrites for x, y in zip(served_a, served_b))
    served_tag_diff = max((abs(pa[t.name] - pb[t.name]) for x, y in zip(served_a, served_b) if x.rewrites == y.rewrites
                           for pa, pb in zip(x.probabilities, y.probabilities) for t in TAGS), default=0.0)
    tags_a = np.array([[row[t.name] for t in TAGS] for row in plain.tag(pairs)])
    tags_b = np.array([[row[t.name] for t in TAGS] for row in short.tag(pairs)])

    result = {
        "model": args.model, "shortlist": args.shortlist, "token_cap": plain.max_new_tokens, "queries": len(queries), "judged_pairs": len(pairs),
        "greedy_tokens_compared": steps, "greedy_sequences_that_differ": greedy_differ,
        "prompts_whose_top16_ids_differ": top_differ,
        "served_rewrite_lists_that_differ": lists_differ, "served_max_tag_prob_diff": served_tag_diff,
        "judged_pairs_tag_argmax_differ": int((tags_a.argmax(1) != tags_b.argmax(1)).sum()),
        "judged_pairs_max_tag_prob_diff": float(np.abs(tags_a - tags_b).max()),
    }
    for key, value in result.items():
        print(f"  {key}: {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
