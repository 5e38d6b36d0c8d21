"""Split compounds across the catalog: does joining them find the products that name the compound?

Why: the judged queries hold only a handful of split compounds, and their judgment pools were built from
what the split words retrieved (``docs/eval/headroom.md`` §20), so nDCG@10 cannot say much about joining.
This is a label-free check over many compounds: the catalog's most frequent title words that split into two
catalog words (``typo_queries.misspell_split``'s rule: both parts at least 3 letters, each in at least 3
titles, the cut nearest the middle), each searched as its split form. For each, the share of the top 10
whose title holds the compound word, for the baseline alone and for the baseline with the plugin's index
respelling (``suggest_body``, ``respelled``, the default ``respell`` settings) merged as the plugin serves
it (``merge_rewrites``, confident mode, ``operator: and``). A title that holds the compound is a proxy for
"what the user meant", not a judgment: "keyboard" titles for ``key board``.

    .venv/bin/python benchmarks/split_compounds.py --json docs/eval/split_compounds.json

Needs a node with the catalog under the alias ``products`` (``qrw opensearch start``, ``qrw index``).
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_companion import emit
from training_candidates import node_parser
from typo_queries import misspell_split, title_word_counts


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch

    from qrw.plugin.config import RespellConfig
    from qrw.plugin.merge import WeightedRewrite, merge_rewrites
    from qrw.plugin.respell import respelled, suggest_body
    from qrw.search.baseline import DEFAULT_BASELINE

    parser = node_parser(__doc__)
    parser.add_argument("--words", type=int, default=100, help="compounds checked: the most frequent title words that split")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    df = title_word_counts()
    compounds = []
    for word, _n in df.most_common():
        if word.isalpha() and (split := misspell_split(word)) is not None:
            compounds.append((word, split))
        if len(compounds) == args.words:
            break
    client = OpenSearch(args.url, timeout=120)
    config = RespellConfig()

    def share(body: dict, compound: str) -> float:
        hits = client.search(index=args.index, body={**body, "size": 10, "_source": ["title"]})["hits"]["hits"]
        return sum(compound in (h["_source"].get("title") or "").casefold() for h in hits) / 10

    rows = []
    for compound, split in compounds:
        base = {"query": DEFAULT_BASELINE.clause(split)}
        found = respelled(split, client.search(index=args.index, body=suggest_body(split, config)),
                          join_min_docs=config.join_min_docs)
        served = merge_rewrites(base, [WeightedRewrite(found.text, config.weight, True)], "and", "confident") if found else base
        rows.append({"compound": compound, "split": split, "titles": df[compound], "respelled": found.text if found else None,
                     "share_baseline": share(base, compound), "share_served": share(served, compound)})
    joined = [r for r in rows if r["respelled"] == r["compound"]]
    report = {
        "compounds": len(rows), "joined": len(joined),
        "respelled_otherwise": [[r["split"], r["respelled"]] for r in rows if r["respelled"] not in (None, r["compound"])],
        "not_joined": [r["split"] for r in rows if r["respelled"] is None],
        "top10_share_holding_the_compound": {
            "baseline": round(statistics.fmean(r["share_baseline"] for r in rows), 3),
            "served": round(statistics.fmean(r["share_served"] for r in rows), 3),
            "joined_only_baseline": round(statistics.fmean(r["share_baseline"] for r in joined), 3) if joined else None,
            "joined_only_served": round(statistics.fmean(r["share_served"] for r in joined), 3) if joined else None},
        "share_fell": [[r["split"], r["share_baseline"], r["share_served"]] for r in rows if r["share_served"] < r["share_baseline"]],
        "rows": rows,
        "method": {"rule": "typo_queries.misspell_split on the most frequent alphabetic title words", "respell": config.model_dump(),
                   "baseline": DEFAULT_BASELINE.name, "machine": platform.platform(), "python": platform.python_version(),
                   "opensearch": client.info()["version"]["number"], "seconds": round(time.perf_counter() - started, 1)},
    }
    return emit(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
