"""How often does index respelling "correct" a correctly spelled word on a multi-shard index? (a measurement)

Why: the term suggester's ``suggest_mode: missing`` is decided per shard, so on an index of several
shards a word that some shards hold and others do not is "missing" on the latter, and they suggest
its neighbours. ``plugin.respell`` now confirms such corrections index-wide (``held_body``). This
script measures what that check changes on the real catalog: it copies the index into ``--shards``
shards (scroll and bulk, as ``bm25_length_norm.py``) and respells, with and without the check:

* every judged query as written (correctly spelled: any change is a false correction),
* the three label-free typo sets of ``typo_queries.py`` (``slip``, ``vowel``, ``sound``) built from
  the judged queries: the check must not cost their recoveries,

and the same on the single-shard index for reference. Every respelling goes through the plugin's
own functions with the default ``RespellConfig``. All 93 judged queries are used, none is tuned on:
this is a correctness check, not a quality figure. Deterministic: one run.

    .venv/bin/python benchmarks/respell_shards.py --json docs/eval/respell_shards.json
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline_companion import emit
from training_candidates import node_parser
from typo_queries import EDITS


def copy_sharded(client, source: str, target: str, shards: int) -> None:
    """A fresh copy of ``source`` (analysis, mapping, documents) with ``shards`` primary shards."""
    from opensearchpy import helpers

    concrete = next(iter(client.indices.get(index=source)))
    meta = client.indices.get(index=source)[concrete]
    if client.indices.exists(index=target):
        client.indices.delete(index=target)
    client.indices.create(index=target, body={
        "settings": {"number_of_shards": shards, "number_of_replicas": 0,
                     "analysis": meta["settings"]["index"].get("analysis", {})},
        "mappings": meta["mappings"]})
    actions = ({"_index": target, "_id": hit["_id"], "_source": hit["_source"]}
               for hit in helpers.scan(client, index=source, query={"query": {"match_all": {}}}, size=1000))
    helpers.bulk(client, actions, chunk_size=1000, request_timeout=600)
    client.indices.refresh(index=target)


def respell_all(client, index: str, texts: list[str], config, *, check: bool) -> dict[str, str]:
    """{text: respelled text} for the texts the plugin would respell on ``index``: with the check, exactly what
    ``qrw eval`` asks (``index_respellings``); without it, the suggester's answer alone (the old behaviour)."""
    from qrw.plugin.respell import respelled, suggest_body

    from qrw.eval.compare import index_respellings

    if check:
        return {text: found.text for text, found in index_respellings(client, index, texts, config).items()}
    answers = {text: client.search(index=index, body=suggest_body(text, config)) for text in texts}
    return {text: found.text for text, answer in answers.items() if (found := respelled(text, answer)) is not None}


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch
    from qrw.plugin.config import RespellConfig
    from qrw.plugin.prompt import normalize_text

    from qrw.eval.judgments import load_judgments
    from qrw.search.catalog import default_data_dir

    parser = node_parser(__doc__)
    parser.add_argument("--side-index", default="qrw-bench-respell-shards")
    parser.add_argument("--shards", type=int, default=5)
    args = parser.parse_args(argv)
    started = time.perf_counter()

    queries = [normalize_text(q) for q in load_judgments(default_data_dir() / "judgments" / "judgments.csv")]
    sets = {"as written": queries}
    for name, edit in EDITS.items():
        sets[f"typo: {name}"] = [t for t in (edit(q) for q in queries) if t is not None]
    config = RespellConfig()
    client = OpenSearch(args.url, timeout=300)
    copy_sharded(client, args.index, args.side_index, args.shards)
    try:
        report: dict = {"shards": args.shards, "sets": {}}
        for name, texts in sets.items():
            single = respell_all(client, args.index, texts, config, check=True)
            unchecked = respell_all(client, args.side_index, texts, config, check=False)
            checked = respell_all(client, args.side_index, texts, config, check=True)
            report["sets"][name] = {
                "queries": len(texts), "respelled_single_shard": len(single),
                f"respelled_{args.shards}_shards_without_check": len(unchecked),
                f"respelled_{args.shards}_shards_with_check": len(checked),
                "with_check_equals_single_shard": checked == single,
                "only_without_check": {t: unchecked[t] for t in sorted(unchecked) if unchecked[t] != single.get(t)},
                "differs_from_single_shard_with_check": {t: [single.get(t), checked.get(t)] for t in sorted(set(single) | set(checked))
                                                         if single.get(t) != checked.get(t)},
            }
    finally:
        client.indices.delete(index=args.side_index, ignore_unavailable=True)
    report["method"] = {"machine": platform.platform(), "python": platform.python_version(),
                        "opensearch": client.info()["version"]["number"], "respell_field": config.field,
                        "seconds": round(time.perf_counter() - started, 1)}
    return emit(report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())
