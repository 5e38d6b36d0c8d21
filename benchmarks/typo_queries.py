"""Misspelled queries: does gated rewriting recover them, and does a fuzzy baseline do it without a model?

Why: users misspell, and a typo often matches nothing (`labtop`). The rewriter was trained on
pseudo-queries that include misspellings, and the serving chain lets a respelling of the query add
documents (``plugin/widening.py``). The strongest plain lexical answer to typos is OpenSearch's own
``fuzziness``, which the baseline can now carry (``BaselineSpec.fuzziness``, an index profile's
``baseline.fuzziness``). This measures both, on the judged **training-fold** queries by default;
``--fold valid`` runs the same on the validation fold, once, for the report (nothing here is chosen
from its figures: the edit rule and the systems are fixed):

* typo queries, label-free and deterministic: in each query's longest alphabetic word of five letters
  or more, one edit chosen by a hash of the query (swap two inner letters, drop one, or double one);
  queries without such a word are left out; the misspelled query keeps the original's judgments;
* ten runs of ``qrw eval --systems original,gated --model default`` (the real CLI, one index):
  clean and misspelled queries, each with the shipped Icecat profile, the same profile plus
  ``baseline.fuzziness: AUTO``, plus ``baseline.fuzzy_boost``, and the shipped profile with the
  serving chain's zero-hit recovery turned off (``recovery.zero_hits: false``, how gated rewriting
  served before it; ``qrw.plugin.recovery``). ``original`` there is that profile's baseline;
* index respelling (``qrw.plugin.respell``, headroom §17): the shipped chain with it off
  (``respell.enabled: false``, the run ``shipped_no_respell``), without joining split words
  (``respell.join_split_words: false``, the run ``shipped_no_join``, §20), and a sweep of ``respell.weight``
  over ``--respell-weights`` (clean and misspelled, with the queries each run respelled and harmed);
* the baseline plus a fuzzy copy of itself at a low weight (``BaselineSpec.fuzzy_boost``, an index
  profile's ``baseline.fuzzy_boost``; the copy leaves out the joined-pairs field): once through
  ``qrw eval`` at ``--fuzzy-boost`` (third profile, with gated rewriting), and as a sweep over
  ``--fuzzy-weights`` searched directly (nDCG@10 of the top 10, with the unchanged baseline beside it
  computed the same way). Exact matches keep their lead, and a misspelled word can still match.

    .venv/bin/python benchmarks/typo_queries.py --json docs/eval/typo_queries.json
    .venv/bin/python benchmarks/typo_queries.py --fold valid --respelling-sweep "" --respell-weights "" --json docs/eval/typo_queries_valid.json
    .venv/bin/python benchmarks/typo_queries.py --edit vowel --respelling-sweep "" --respell-weights "" --fuzzy-weights "" --json docs/eval/typo_queries_vowel.json
    .venv/bin/python benchmarks/typo_queries.py --edit sound --respelling-sweep "" --respell-weights "" --fuzzy-weights "" --json docs/eval/typo_queries_sound.json
    .venv/bin/python benchmarks/typo_queries.py --edit split --respelling-sweep "" --respell-weights "" --fuzzy-weights "" --json docs/eval/typo_queries_split.json

Needs a node with the catalog under the alias ``products`` (``qrw opensearch start``, ``qrw index``).
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def longest_word(query: str) -> tuple[list[str], int] | None:
    """(the query's words, the position of its longest alphabetic word of >= 5 letters, the first on a tie), or
    None: the word both typo sets misspell."""
    words = query.split()
    eligible = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 5]
    if not eligible:
        return None
    return words, max(eligible, key=lambda k: (len(words[k]), -k))


def misspell(query: str) -> str | None:
    """One deterministic edit inside the query's longest alphabetic word of >= 5 letters (None: no such word)."""
    found = longest_word(query)
    if found is None:
        return None
    words, i = found
    word = words[i]
    digest = int(hashlib.sha1(query.encode()).hexdigest(), 16)
    kind, pos = digest % 3, 1 + (digest // 3) % (len(word) - 2)  # an inner position: first and last letters kept
    swapped = word[:pos] + word[pos + 1] + word[pos] + word[pos + 2 :]
    if kind == 0 and swapped != word:
        new = swapped
    elif kind == 2:
        new = word[:pos] + word[pos] + word[pos:]
    else:
        new = word[:pos] + word[pos + 1 :]
    return " ".join([*words[:i], new, *words[i + 1 :]])


VOWELS = "aeiou"


def _respell_inner_letter(query: str, letters, replacement) -> str | None:
    """The query with one inner letter of its longest alphabetic word of >= 5 letters (first and last kept) that is
    in ``letters`` replaced by ``replacement(letter, digest)``; position chosen by a hash of the query; None: no
    such word, or no such letter."""
    found = longest_word(query)
    if found is None:
        return None
    words, i = found
    word = words[i]
    inner = [p for p in range(1, len(word) - 1) if word[p] in letters]
    if not inner:
        return None
    digest = int(hashlib.sha1(query.encode()).hexdigest(), 16)
    pos = inner[digest % len(inner)]
    return " ".join([*words[:i], word[:pos] + replacement(word[pos], digest) + word[pos + 1:], *words[i + 1 :]])


def misspell_vowel(query: str) -> str | None:
    """One vowel written for another (``monitor`` -> ``monitur``) inside the query's longest alphabetic word of
    >= 5 letters, position and vowel chosen by a hash of the query; None: no such word, or no inner vowel."""

    def other_vowel(vowel: str, digest: int) -> str:
        others = [v for v in VOWELS if v != vowel]
        return others[(digest // 7) % len(others)]

    return _respell_inner_letter(query, VOWELS, other_vowel)


SOUND_ALIKE = {"b": "p", "p": "b", "d": "t", "t": "d", "g": "k", "k": "g", "f": "v", "v": "f", "s": "z", "z": "s"}


def misspell_sound(query: str) -> str | None:
    """One consonant written for the one that sounds alike (``laptop`` -> ``labtop``; b/p, d/t, g/k, f/v, s/z)
    inside the query's longest alphabetic word of >= 5 letters, position chosen by a hash of the query; None: no
    such word, or no inner consonant with a sound-alike."""
    return _respell_inner_letter(query, SOUND_ALIKE, lambda letter, _digest: SOUND_ALIKE[letter])


MIN_SPLIT_WORD = 6
MIN_SPLIT_PART = 3
MIN_PART_TITLES = 3


@functools.cache
def title_word_counts() -> "collections.Counter[str]":
    """How many catalog titles hold each word (lowercased): the words a split may leave."""
    import collections
    import re

    from qrw.search.catalog import load_catalog

    counts: collections.Counter[str] = collections.Counter()
    for product in load_catalog(None):
        counts.update(set(re.findall(r"\w+", product.title.casefold())))
    return counts


def misspell_split(query: str) -> str | None:
    """A compound written as two words (``keyboard`` -> ``key board``): the query's longest alphabetic word of
    >= ``MIN_SPLIT_WORD`` letters (the first on a tie) split into two parts of >= ``MIN_SPLIT_PART`` letters that are
    each a word of at least ``MIN_PART_TITLES`` catalog titles, at the cut nearest the middle (the first on a tie);
    None: no such word or cut. Label-free (headroom §20)."""
    title_words = title_word_counts()
    words = query.split()
    eligible = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= MIN_SPLIT_WORD]
    if not eligible:
        return None
    i = max(eligible, key=lambda k: (len(words[k]), -k))
    word = words[i]
    cuts = [c for c in range(MIN_SPLIT_PART, len(word) - MIN_SPLIT_PART + 1)
            if title_words[word[:c].casefold()] >= MIN_PART_TITLES and title_words[word[c:].casefold()] >= MIN_PART_TITLES]
    if not cuts:
        return None
    cut = min(cuts, key=lambda c: (abs(c - len(word) / 2), c))
    return " ".join([*words[:i], word[:cut], word[cut:], *words[i + 1:]])


EDITS = {"slip": misspell, "vowel": misspell_vowel, "sound": misspell_sound, "split": misspell_split}


def fuzzy_should(url: str, rows: list[dict], typo_of: dict[str, str], weights: list[float]) -> dict:
    """nDCG@10 of the baseline with its fuzzy copy at weight w (``BaselineSpec.fuzzy_boost``) on the clean and
    the misspelled queries."""
    import collections
    import statistics

    from opensearchpy import OpenSearch

    from qrw.eval.metrics import ndcg_at_k
    from qrw.search.baseline import DEFAULT_BASELINE, BaselineSpec
    from qrw.search.runner import search_many

    qrels: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for r in rows:
        if r["query"] in typo_of:
            qrels[r["query"]][r["docid"]] = int(r["rating"])
    client = OpenSearch(url, timeout=120)

    def body(text: str, weight: float | None) -> dict:
        if weight is None:
            return DEFAULT_BASELINE.build(text)
        return BaselineSpec(**{**DEFAULT_BASELINE.model_dump(), "fuzzy_boost": weight}).build(text)

    out = {}
    for weight in [None, *weights]:
        row = {}
        for kind in ("clean", "typo"):
            bodies = {q: body(q if kind == "clean" else typo_of[q], weight) for q in qrels}
            ranked = search_many(client, "products", bodies, depth=10, batch_size=20)
            row[kind] = round(statistics.mean(ndcg_at_k(ranked[q].ids, qrels[q], 10) for q in qrels), 4)
        out["baseline" if weight is None else f"w={weight:g}"] = row
    return out


def main(argv: list[str] | None = None) -> int:
    from qrw.eval.folds import fold_of
    from qrw.search.catalog import default_data_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work-dir", type=Path, default=REPO / "runs" / "typo", help="judgment files, profile and reports")
    parser.add_argument("--url", default="http://127.0.0.1:9200")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--fold", choices=("train", "valid"), default="train",
                        help="judged queries of the training folds, or of the validation fold (fold 0)")
    parser.add_argument("--fuzzy-boost", type=float, default=0.1,
                        help="baseline.fuzzy_boost of the profile run through qrw eval (0.1: free on clean training queries in stop 22)")
    parser.add_argument("--fuzzy-weights", default="0.05,0.1,0.2,0.3,0.5,1.0", help="weights of the fuzzy should clause")
    parser.add_argument("--edit", choices=tuple(EDITS), default="slip",
                        help="how queries are misspelled: slip (swap, drop or double a letter; misspell), vowel "
                             "(one vowel for another; misspell_vowel, headroom §17b), sound (one consonant for "
                             "its sound-alike; misspell_sound, headroom §17c) or split (a compound written as two "
                             "words; misspell_split, headroom §20)")
    parser.add_argument("--respell-weights", default="0.3,0.5,1",
                        help="respell.weight values run through qrw eval (index respelling, headroom §17); empty: skip")
    parser.add_argument("--respelling-sweep", default="1.01,0.2,0.1,0.05,0",
                        help="gate.respelling_keep_min values run through qrw eval (shipped profile, clean and "
                             "misspelled; headroom §16b); empty: skip")
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    with (default_data_dir() / "judgments" / "judgments.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if (fold_of(r["query"]) == 0) == (args.fold == "valid")]
    edit = EDITS[args.edit]
    typo_of = {q: edit(q) for q in sorted({r["query"] for r in rows})}
    tag = args.fold if args.edit == "slip" else f"{args.fold}_{args.edit}"  # file names: one set of files per edit kind
    kept = {q: t for q, t in typo_of.items() if t is not None}
    files = {"clean": args.work_dir / f"judgments_clean_{tag}.csv", "typo": args.work_dir / f"judgments_typo_{tag}.csv"}
    for kind, path in files.items():
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            for r in rows:
                if r["query"] in kept:
                    writer.writerow({**r, "query": r["query"] if kind == "clean" else kept[r["query"]]})
    shipped = yaml.safe_load((REPO / "qrw" / "search" / "profiles" / "icecat.yaml").read_text())
    fuzzy = {**shipped, "name": "icecat_fuzzy", "baseline": {**shipped["baseline"], "name": shipped["baseline"]["name"] + "_fuzzy", "fuzziness": "AUTO"}}
    fuzzy_copy = {**shipped, "name": "icecat_fuzzy_copy",
                  "baseline": {**shipped["baseline"], "name": shipped["baseline"]["name"] + "_fuzzy_copy", "fuzzy_boost": args.fuzzy_boost}}
    profiles = {"shipped": None, "fuzzy": args.work_dir / "icecat_fuzzy.yaml", "fuzzy_copy": args.work_dir / "icecat_fuzzy_copy.yaml",
                "shipped_no_recovery": None, "shipped_no_respell": None, "shipped_no_vowel_slips": None,
                "shipped_no_sound_slips": None, "shipped_model_on_typed": None, "shipped_no_join": None}
    profiles["fuzzy"].write_text(yaml.safe_dump(fuzzy, sort_keys=False))
    profiles["fuzzy_copy"].write_text(yaml.safe_dump(fuzzy_copy, sort_keys=False))
    layer_settings = {  # the shipped chain with one plugin setting changed, per run
        "shipped_no_recovery": {"recovery": {"zero_hits": False}},  # as before zero-hit recovery
        "shipped_no_respell": {"respell": {"enabled": False}},  # without index respelling
        "shipped_no_vowel_slips": {"respell": {"vowel_slips": False}},  # respelling without vowel slips (§17b)
        "shipped_no_sound_slips": {"respell": {"sound_slips": False}},  # without sound-alike slips (§17c)
        "shipped_model_on_typed": {"respell": {"rewrite_respelled": False}},  # the model rewrites the text as typed (§17d)
        "shipped_no_join": {"respell": {"join_split_words": False}},  # respelling without joining split words (§20)
    }
    layers = {name: args.work_dir / f"plugin_{name.removeprefix('shipped_')}.yaml" for name in layer_settings}
    for name, path in layers.items():
        path.write_text(yaml.safe_dump(layer_settings[name]))

    qrw = str(Path(sys.executable).with_name("qrw"))
    results: dict = {"queries": len(kept), "left_out_no_long_word": len(typo_of) - len(kept),
                     "examples": dict(list(kept.items())[:12]), "runs": {}}
    for kind, judgments in files.items():
        for profile_name, profile in profiles.items():
            out = args.work_dir / f"eval_{tag}_{kind}_{profile_name}.json"
            command = [qrw, "eval", "--judgments", str(judgments), "--systems", "original,gated", "--model", "default",
                       "--url", args.url, "--json", str(out), "--quiet"]
            if profile:
                command += ["--profile", str(profile)]
            if profile_name in layers:
                command += ["--plugin-config", str(layers[profile_name])]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            report = json.loads(out.read_text())
            systems = {name.split(":")[0]: s for name, s in report["systems"].items()}
            per_query = {r["query"]: r for r in systems["gated"]["per_query"]}
            results["runs"][f"{kind}/{profile_name}"] = {
                "original_ndcg@10": round(systems["original"]["ndcg@10"], 4), "gated_ndcg@10": round(systems["gated"]["ndcg@10"], 4),
                "gated_x_original": round(systems["gated"]["ndcg@10"] / systems["original"]["ndcg@10"], 3),
                "gated_harm_rate": systems["gated"]["harm_rate"], "gated_win_rate": systems["gated"]["win_rate"],
                "original_zero_hits": sum(1 for r in systems["original"]["per_query"] if r.get("total_hits") == 0),
                "gated_zero_hit_retries": systems["gated"].get("zero_hit_recoveries", 0),
                "gated_index_respellings": systems["gated"].get("index_respellings", 0),
                "served": {q: r.get("rewrites") for q, r in per_query.items() if r.get("rewrites")},
                "served_model_rewrites": sum(d.get("action") in ("full", "down") for r in per_query.values()
                                             for d in r.get("decisions", [])),
            }
    def layered(name: str, layer_settings: dict) -> dict[str, dict]:
        """Per kind (clean, typo): the gated and original systems of ``qrw eval`` with a plugin config layer."""
        layer = args.work_dir / f"plugin_{name}.yaml"
        layer.write_text(yaml.safe_dump(layer_settings))
        out_systems = {}
        for kind, judgments in files.items():
            out = args.work_dir / f"eval_{tag}_{kind}_{name}.json"
            subprocess.run([qrw, "eval", "--judgments", str(judgments), "--systems", "original,gated", "--model", "default",
                            "--url", args.url, "--json", str(out), "--quiet", "--plugin-config", str(layer)],
                           check=True, stdout=subprocess.DEVNULL)
            out_systems[kind] = {n.split(":")[0]: s for n, s in json.loads(out.read_text())["systems"].items()}
        return out_systems

    results["respell_weights"] = {}
    for value in [v for v in args.respell_weights.split(",") if v.strip()]:
        row = {}
        for kind, systems in layered(f"respell_weight_{value}", {"respell": {"weight": float(value)}}).items():
            gated, before = systems["gated"], {r["query"]: r["ndcg@10"] for r in systems["original"]["per_query"]}
            row[kind] = {"gated_ndcg@10": round(gated["ndcg@10"], 4), "harm_rate": gated["harm_rate"],
                         "win_rate": gated["win_rate"], "index_respellings": gated.get("index_respellings", 0),
                         "harmed": [r["query"] for r in gated["per_query"] if r["ndcg@10"] < before[r["query"]] - 0.05]}
        results["respell_weights"][value] = row
        print(f"respell.weight {value}: clean {row['clean']['gated_ndcg@10']:.4f} (harm {row['clean']['harm_rate']:.1%}, "
              f"{row['clean']['index_respellings']} respelled), misspelled {row['typo']['gated_ndcg@10']:.4f} "
              f"(harm {row['typo']['harm_rate']:.1%}, {row['typo']['index_respellings']} respelled)")
    results["respelling_sweep"] = {}
    for value in [v for v in args.respelling_sweep.split(",") if v.strip()]:
        row = {}
        for kind, systems in layered(f"respelling_{value}", {"gate": {"respelling_keep_min": float(value)}}).items():
            gated = systems["gated"]
            row[kind] = {"gated_ndcg@10": round(gated["ndcg@10"], 4), "harm_rate": gated["harm_rate"],
                         "win_rate": gated["win_rate"], "served_rewrites": gated["served_rewrites"]}
        results["respelling_sweep"][value] = row
        print(f"respelling_keep_min {value}: clean {row['clean']['gated_ndcg@10']:.4f} (harm {row['clean']['harm_rate']:.1%}), "
              f"misspelled {row['typo']['gated_ndcg@10']:.4f} (harm {row['typo']['harm_rate']:.1%})")
    base = results["runs"]["clean/shipped"]["original_ndcg@10"]
    print(f"{len(kept)} {args.fold}-fold queries misspelled ({args.edit}; {results['left_out_no_long_word']} left out: no word the edit applies to)")
    print(f"{'run':16s} {'original':>9s} {'gated':>7s} {'gated/orig':>10s} {'x clean original':>17s} {'harm':>6s} {'win':>6s} {'0-hit':>6s} {'retry':>6s}")
    for name, r in results["runs"].items():
        print(f"{name:16s} {r['original_ndcg@10']:9.4f} {r['gated_ndcg@10']:7.4f} {r['gated_x_original']:10.3f} "
              f"{r['gated_ndcg@10'] / base:17.3f} {r['gated_harm_rate']:6.1%} {r['gated_win_rate']:6.1%} {r['original_zero_hits']:6d} {r['gated_zero_hit_retries']:6d}")
    results["fuzzy_should"] = fuzzy_should(args.url, rows, kept, [float(w) for w in args.fuzzy_weights.split(",") if w.strip()])
    print("baseline + fuzzy copy of itself as a should clause (nDCG@10 of the top 10, searched directly):")
    for name, r in results["fuzzy_should"].items():
        print(f"  {name:10s} clean {r['clean']:.4f}   misspelled {r['typo']:.4f}")
    results["method"] = {"queries": "judged training folds (fold != 0)" if args.fold == "train" else "judged validation fold (fold 0)", "edit": args.edit, "model": "default", "seconds": round(time.perf_counter() - started, 1),
                         "command": "qrw eval --systems original,gated --model default [--profile icecat_fuzzy.yaml]"}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
