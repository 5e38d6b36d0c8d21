"""How do candidates that append words after the whole query fare? (the count behind ``guards.keep_head``)

Why: ``guards.keep_head`` drops a rewrite that keeps every word of the query and appends more
(``tv`` -> ``tv remote``). This reads the measured training-fold candidates that
``benchmarks/semantic_judge.py --rows`` writes (each with its nDCG@10 gain, OR-merged at 0.5), splits
them with the guard's own test (``plugin.guards.appends_after_query``) and counts help / hurt
(beyond +-0.05) on each side. Training folds only: the rows never hold a validation query.

    .venv/bin/python benchmarks/extension_candidates.py --rows runs/candidates_train.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HARM = 0.05


def main(argv: list[str] | None = None) -> int:
    from qrw.plugin.guards import appends_after_query

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=Path, required=True, help="semantic_judge.py --rows output (query, rewrite, gain)")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line.strip()]
    sides = {"append after the query": [], "all others": []}
    for row in rows:
        sides["append after the query" if appends_after_query(row["query"], row["rewrite"]) else "all others"].append(row)
    for name, side in sides.items():
        gains = [r["gain"] for r in side]
        print(f"{name}: {len(side)} candidates, help {sum(g > HARM for g in gains)}, hurt {sum(g < -HARM for g in gains)}, "
              f"mean gain {statistics.fmean(gains) if gains else 0.0:+.3f}")
    for row in sorted(sides["append after the query"], key=lambda r: -r["gain"]):
        print(f"  {row['query']!r} -> {row['rewrite']!r}: {row['gain']:+.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
