"""What could *any* one rewrite from the catalog's own words reach? (an exhaustive ceiling, nothing built)

Why: every candidate source measured so far (the trainer's candidates, encoder-chosen types and title
phrases, WordNet) reaches at most 1.02x the baseline on the validation fold through a perfect gate
(``docs/eval/headroom.md`` section 7), so the issue's 1.03x looks out of reach. That is a statement
about the sources measured. This script removes the source from the question: it tries, for every
judged query, *every* run of adjacent words (up to ``--max-words``) found in at least ``--min-df``
catalog titles as the rewrite, merged two ways at each boost of ``--boosts``: ``expand``
(``bool.should[baseline, text mirror^boost]``, as section 7; the mirror is the baseline's own clause
with ``operator: and``) and ``rerank`` (``bool.must[baseline]`` + ``should[text mirror^boost]``, no
new hits). It keeps the best per query (or none): a perfect gate over a perfect source of catalog
phrases. A rewrite that uses words the catalog does not hold retrieves nothing, so this bounds what a
rewriter that writes one phrase can do here, whatever model writes it.

Candidates pass the plugin's guards first (``plugin.guards``: no brand or number the query does not
name, no words appended after all of the query's, no copy of the query): those are never served.
Then a lossless shortcut: a rewrite can only raise nDCG@10 by lifting a product judged relevant
(grade >= 1) to the query, and under ``operator: and`` it matches a product only when every one of
its stemmed terms is in the product's catch-all text. So a phrase is searched only when some
positively judged product of the query holds all of its terms, read with the index's own analyzer
(``_analyze``, ``qrw_stemmed``: the analysis of the catch-all field). Phrases the shortcut skips
cannot help; they can only hurt, which a perfect gate never serves.

With ``--source relevant-texts`` the phrases are instead every run of up to ``--max-words`` words of
the text of the products judged relevant to the query (title, name, brand, description, attributes):
more than any rewriter can know, the widest pool. There only the phrases that pass a relevance test
below are merged.

Each phrase is also searched alone, and two narrower pools are reported beside "any phrase":
"relevant", the issue's test as ``qrw eval`` applies it (the phrase's own top 10 has a mean judged
grade >= 2, unjudged products counting 0), and "relevant among judged" (the same mean over judged
products only, at least ``MIN_JUDGED`` of them).

The perfect gate reads the judgments, so the figures are ceilings, not a system. ``--fold train``
(the 75 training-fold queries) and ``--fold valid`` (the 18 validation queries) report separately;
nothing is chosen or tuned here. With ``--pairs`` the best second phrase is added to each query's
best first one (greedy), a ceiling for a rewriter that serves two phrases.

    .venv/bin/python benchmarks/vocabulary_ceiling.py --fold train --pairs --json docs/eval/vocabulary_ceiling_train.json
    .venv/bin/python benchmarks/vocabulary_ceiling.py --fold valid --pairs --json docs/eval/vocabulary_ceiling_valid.json
    .venv/bin/python benchmarks/vocabulary_ceiling.py --fold valid --source relevant-texts --max-words 3 --pairs --json docs/eval/vocabulary_ceiling_valid_relevant_texts.json

(``docs/eval/headroom.md`` section 18 lists every committed run.)

Needs the index of ``qrw sandbox`` / ``qrw index`` at ``--url``. Deterministic: one run.
"""

from __future__ import annotations

import collections
import platform
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_candidates import emit, node_parser

HARM = 0.05
SEARCHED_FIELDS = ("title", "name", "supplier", "short_description", "attributes")  # what the catch-all field holds
MIN_JUDGED = 3  # "relevant among judged": at least this many judged products in the phrase's own top 10
_WORD = re.compile(r"\w+", re.UNICODE)


def title_word_runs(titles: list[str], min_df: int, max_words: int = 2) -> list[str]:
    """Title word runs of 1 to ``max_words`` adjacent words (lowercased) found in at least ``min_df`` titles.
    Every word counts, digits and short words too (``a1``, ``tv``): the ceiling must not depend on a filter, so
    this is not ``trainer.encoder_bridge.title_phrases`` (letters only, 3+ characters, at most two words)."""
    df: collections.Counter[str] = collections.Counter()
    for title in titles:
        df.update(word_runs(title, max_words))
    return sorted(p for p, n in df.items() if n >= min_df)


def word_runs(text: str, max_words: int) -> set[str]:
    """Every run of 1 to ``max_words`` adjacent words (lowercased) of ``text``."""
    words = _WORD.findall(text.casefold())
    return {" ".join(words[i:i + n]) for n in range(1, max_words + 1) for i in range(len(words) - n + 1)}


def analyzed(client, index: str, texts: list[str], analyzer: str, max_chars: int = 20_000) -> list[frozenset[str]]:
    """Each text's terms under ``analyzer`` of ``index``: texts are sent in batches (joined by newlines,
    at most ``max_chars`` per call, under the node's 10,000-token limit of ``_analyze``) and split back by
    offset, since the standard tokenizer never crosses a newline."""
    out: list[frozenset[str]] = []
    start = 0
    while start < len(texts):
        chunk, size = [], 0
        while start + len(chunk) < len(texts) and (not chunk or size + len(texts[start + len(chunk)]) < max_chars):
            chunk.append(texts[start + len(chunk)].replace("\n", " "))
            size += len(chunk[-1]) + 1
        start += len(chunk)
        ends, position = [], 0
        for text in chunk:
            position += len(text)
            ends.append(position)
            position += 1
        terms: list[set[str]] = [set() for _ in chunk]
        tokens = client.indices.analyze(index=index, body={"analyzer": analyzer, "text": "\n".join(chunk)})["tokens"]
        line = 0
        for token in tokens:
            while token["start_offset"] > ends[line]:
                line += 1
            terms[line].add(token["token"])
        out.extend(frozenset(t) for t in terms)
    return out


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch
    from qrw.plugin import guards
    from qrw.plugin.config import GuardConfig
    from tqdm import tqdm

    from qrw.eval.folds import fold_of
    from qrw.eval.judgments import load_judgments
    from qrw.eval.metrics import RELEVANT_GRADE, ndcg_at_k
    from qrw.search.baseline import DEFAULT_BASELINE, STEMMED_ANALYZER
    from qrw.search.catalog import default_data_dir, load_catalog
    from qrw.search.runner import search_many

    parser = node_parser(__doc__)
    parser.add_argument("--fold", choices=("train", "valid"), default="train")
    parser.add_argument("--source", choices=("titles", "relevant-texts"), default="titles",
                        help="titles: word runs found in --min-df catalog titles; relevant-texts: every word run of "
                             "the text of the products judged relevant to the query (only phrases that pass a "
                             "relevance test are merged)")
    parser.add_argument("--min-df", type=int, default=3)
    parser.add_argument("--max-words", type=int, default=2, help="longest phrase, in adjacent title words")
    parser.add_argument("--boosts", default="0.1,0.3,0.5,1.0,2.0")
    parser.add_argument("--merges", default="expand,rerank",
                        help="expand: bool.should[baseline, phrase]; rerank: bool.must[baseline] + should[phrase] (adds no hits)")
    parser.add_argument("--pairs", action="store_true", help="also a greedy second phrase on top of each query's best")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    settings = [(merge, float(b)) for merge in args.merges.split(",") for b in args.boosts.split(",")]

    qrels = load_judgments(default_data_dir() / "judgments" / "judgments.csv")
    queries = [q for q in qrels if (fold_of(q) == 0) == (args.fold == "valid")]
    products = load_catalog(None)
    client = OpenSearch(args.url, timeout=300)

    guard_config = GuardConfig()
    brands = guards.load_brands(guard_config, extra=sorted({p.supplier for p in products if p.supplier}))
    by_id = {p.id: p for p in products}
    positive = {q: [d for d, g in qrels[q].items() if g >= 1 and d in by_id] for q in queries}
    docs = sorted({d for ds in positive.values() for d in ds})
    doc_text = {d: " ; ".join(v for k, v in by_id[d].to_document().items() if k in SEARCHED_FIELDS and isinstance(v, str)) for d in docs}

    candidates: dict[str, list[str]] = {}
    if args.source == "titles":
        phrases = title_word_runs([p.title for p in products], args.min_df, args.max_words)
        phrase_terms = dict(zip(phrases, analyzed(client, args.index, phrases, STEMMED_ANALYZER)))
        doc_terms = dict(zip(docs, analyzed(client, args.index, [doc_text[d] for d in docs], STEMMED_ANALYZER)))
        for q in tqdm(queries, desc="candidates", unit="query"):
            sets = [doc_terms[d] for d in positive[q]]
            matching = [p for p in phrases if phrase_terms[p] and any(phrase_terms[p] <= s for s in sets)]
            candidates[q] = [p for p in matching if guards.check(q, [p], guard_config, brands)[0] is None]
    else:
        phrases = []
        for q in tqdm(queries, desc="candidates", unit="query"):
            runs = sorted({run for d in positive[q] for run in word_runs(doc_text[d], args.max_words)})
            candidates[q] = [p for p in runs if guards.check(q, [p], guard_config, brands)[0] is None]

    def ndcgs(bodies: dict) -> dict:
        ranked = search_many(client, args.index, bodies, depth=10, batch_size=50, progress=True, desc="searching")
        return {key: ndcg_at_k(ranked[key].ids, qrels[key[0]]) for key in bodies}

    mirror = DEFAULT_BASELINE.model_copy(update={"operator": "and"})
    base = ndcgs({(q,): DEFAULT_BASELINE.build(q) for q in queries})
    base = {key[0]: v for key, v in base.items()}

    def merged(q: str, phrases: list[str], setting: tuple[str, float]) -> dict:
        merge, boost = setting
        extra = [mirror.clause(p, boost=boost) for p in phrases]
        if merge == "rerank":
            return {"query": {"bool": {"must": [DEFAULT_BASELINE.clause(q)], "should": extra}}}
        return {"query": {"bool": {"should": [DEFAULT_BASELINE.clause(q), *extra]}}}

    alone = search_many(client, args.index, {(q, p): DEFAULT_BASELINE.build(p) for q in queries for p in candidates[q]},
                        depth=10, batch_size=50, progress=True, desc="each phrase alone")
    relevant = {key: sum(qrels[key[0]].get(d, 0) for d in ranking.ids[:10]) / 10 >= RELEVANT_GRADE
                for key, ranking in alone.items()}
    judged_grades = {key: [qrels[key[0]][d] for d in ranking.ids[:10] if d in qrels[key[0]]] for key, ranking in alone.items()}
    relevant_judged = {key: len(g) >= MIN_JUDGED and statistics.fmean(g) >= RELEVANT_GRADE for key, g in judged_grades.items()}
    every = args.source == "titles"  # from the judged products' own texts only the phrases that pass a test are merged
    scores = ndcgs({(q, p, st): merged(q, [p], st) for q in queries for p in candidates[q]
                    if every or relevant[(q, p)] or relevant_judged[(q, p)] for st in settings})
    baseline_mean = statistics.fmean(base.values())
    report: dict = {"fold": args.fold, "source": args.source, "queries": len(queries),
                    "phrases_in_vocabulary": len(phrases) if every else None,
                    "phrases_tried": sum(len(c) for c in candidates.values()), "baseline_ndcg@10": round(baseline_mean, 4)}
    best: dict[str, tuple[str, tuple[str, float], float]] = {}
    pools = [("any_phrase", lambda q, p: True)] if every else []
    pools += [("relevant_among_judged", lambda q, p: relevant_judged[(q, p)]), ("relevant_phrase", lambda q, p: relevant[(q, p)])]
    for name, admit in pools:
        best = {}
        helped: collections.Counter[str] = collections.Counter()
        for (q, p, st), s in scores.items():
            if not admit(q, p):
                continue
            gain = s - base[q]
            helped[q] += gain > HARM
            if gain > best.get(q, ("", None, 0.0))[2]:
                best[q] = (p, st, gain)
        mean = statistics.fmean(base[q] + best.get(q, ("", 0, 0.0))[2] for q in queries)
        report[name] = {
            "candidates": sum(1 for q in queries for p in candidates[q] if admit(q, p)),
            "perfect_gate_ndcg@10": round(mean, 4), "ratio": round(mean / baseline_mean, 4),
            "queries_helped": sum(1 for q in queries if best.get(q, ("", 0, 0.0))[2] > HARM),
            "picks_that_are_relevant_rewrites": sum(1 for q, (p, _, g) in best.items() if g > 0 and relevant[(q, p)]),
            "picks": sum(1 for q, (_, _, g) in best.items() if g > 0),
            "per_query": sorted(({"query": q, "baseline": round(base[q], 3), "candidates": sum(admit(q, p) for p in candidates[q]),
                                  "helping_phrase_settings": helped[q], "best": best[q][0] if q in best else None,
                                  "setting": f"{best[q][1][0]}^{best[q][1][1]:g}" if q in best else None,
                                  "gain": round(best[q][2], 3) if q in best else 0.0} for q in queries),
                                key=lambda row: (-row["gain"], row["query"])),
        }
    searched = len(scores) + len(alone)
    if args.pairs:
        second = {(q, p): merged(q, [best[q][0], p], best[q][1]) for q in best for p in candidates[q]
                  if p != best[q][0] and relevant[(q, p)]}
        pair_scores = ndcgs(second)
        two = dict(best)
        for (q, p), s in pair_scores.items():
            gain = s - base[q]
            if gain > two[q][2]:
                two[q] = (f"{best[q][0]} + {p}", best[q][1], gain)
        pair_mean = statistics.fmean(base[q] + two.get(q, ("", 0, 0.0))[2] for q in queries)
        report["two_relevant_phrases_perfect_gate_ndcg@10"] = round(pair_mean, 4)
        report["two_relevant_phrases_ratio"] = round(pair_mean / baseline_mean, 4)
        report["two_relevant_phrases_per_query"] = {q: [two[q][0], f"{two[q][1][0]}^{two[q][1][1]:g}", round(two[q][2], 3)] for q in sorted(two, key=lambda q: -two[q][2])}
        searched += len(pair_scores)
    report["method"] = {
        "machine": platform.platform(), "python": platform.python_version(),
        "opensearch": client.info()["version"]["number"], "baseline": DEFAULT_BASELINE.name,
        "merges": {"expand": "bool.should[baseline, text mirror (operator and)^boost]",
                   "rerank": "bool.must[baseline] + should[text mirror (operator and)^boost]"},
        "settings": [f"{m}^{b:g}" for m, b in settings], "min_df": args.min_df, "max_words": args.max_words,
        "harm_threshold": HARM, "searches": searched + len(queries), "seconds": round(time.perf_counter() - started, 1)}
    emit(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
