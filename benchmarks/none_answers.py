"""Does the model ever write a rewrite after answering ``none``? (the check behind the runtime's ``none`` stop)

Why: list decoding ends a row whose first token is ``none`` (``plugin/runtime.py``, ``_greedy``), so
whatever the model would have written after it on the same line is never read. That is exact only if
it writes nothing there. This decodes without that stop (and without the newline stop), keeps the
first line as serving parses it, and counts the answers that start with ``none`` and would still
parse to a rewrite. Queries: the judged development queries and the first ``--pseudo`` held-out
pseudo-queries of a data build's ``rewrite_valid.jsonl``.

    .venv/bin/python benchmarks/none_answers.py --data-dir runs/v2/data
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from qrw.plugin import model_store
    from qrw.plugin.prompt import NO_REWRITE, parse_rewrites, rewrite_prompt
    from qrw.plugin.runtime import load_model
    from qrw.search.catalog import default_data_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--data-dir", type=Path, required=True, help="a `qrw train data` output (its rewrite_valid.jsonl)")
    parser.add_argument("--pseudo", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    with (default_data_dir() / "judgments" / "judgments.csv").open() as handle:
        queries = sorted({row["query"] for row in csv.DictReader(handle)})
    with (args.data_dir / "rewrite_valid.jsonl").open() as handle:
        queries += [json.loads(line)["query"] for _, line in zip(range(args.pseudo), handle)]
    model = load_model(model_store.resolve(args.model), threads=args.threads)
    answers = []
    for start in range(0, len(queries), 32):
        encoded = model._encode([rewrite_prompt(q) for q in queries[start : start + 32]])
        seqs, _ = model._greedy(encoded, model.max_new_tokens, 0, stop_at_newline=False)  # no `none` stop
        answers += [text.split("\n", 1)[0] for text in model.tokenizer.decode_batch(seqs, skip_special_tokens=True)]
    none_first = [(q, a) for q, a in zip(queries, answers) if a.strip().casefold().startswith(NO_REWRITE)]
    continued = [(q, a) for q, a in none_first if parse_rewrites(a)]
    print(f"{len(queries)} queries; first line starts with '{NO_REWRITE}': {len(none_first)}; "
          f"of those, still parse to a rewrite: {len(continued)}")
    print("commonest none answers:", collections.Counter(a for _, a in none_first).most_common(3))
    for query, answer in continued[:20]:
        print(f"  {query!r}: {answer!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
