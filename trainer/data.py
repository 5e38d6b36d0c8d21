"""Training data for the multi-task rewriter, labelled by *measured retrieval gain*.

For every training query (a judged development query of a training fold, or a pseudo-query written
from the catalog, ``trainer.pseudo``) the builder

1. states its intent (``trainer.intent``): judged grades plus type agreement, or the product kind
   the pseudo-query names;
2. proposes candidate rewrites without labels (``trainer.candidates``: vocabulary bridge, spelling,
   product types of the baseline's results; never a brand, number or value the query lacks);
3. measures each candidate with the in-process baseline (``trainer.lexical``): the nDCG@10 change
   when it is merged into the query at the serving weight, and the share of its own top 10 that is
   of the asked-for kind;
4. writes a **tagging** example per candidate, its tag from the measured outcome (``LabelRule``:
   helps -> exact, neutral-positive -> substitute, neutral -> weak, hurts -> irrelevant), and a
   **rewrite** example per query whose target lists the candidates that help, best first, or
   ``none`` when nothing helps;
5. writes GRPO prompts with what the reward needs to rebuild the intent.

Folds: judged queries are assigned to folds by a hash of their text; fold ``valid_fold`` is
validation and never trained on. Pseudo-queries are split by the same hash of their text, and one
equal to a validation query is dropped (the leakage check in the data card counts what is left).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import random
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from qrw.errors import ConfigError
from qrw.eval.folds import fold_of, split_queries
from qrw.plugin.prompt import TAGS, rewrite_completion, rewrite_prompt, tag_completion, tag_prompt
from qrw.search.connect import default_url
from qrw.trainer.config import field
from qrw.trainer.intent import Intent, LabelRule, MergeSettings, judged_intent, measure, pseudo_intent

DATA_FORMAT = "qrw-data-2"


@dataclasses.dataclass
class DataConfig:
    """``qrw train data``: build the JSONL training and validation sets and their data card."""

    # --- inputs
    output_dir: str = field("runs/data", "folder for the JSONL files and the data card")
    data_dir: str | None = field(None, "Icecat folder (products/, judgments/); default: QRW_DATA_DIR or shared/data/icecat")
    profile: str | None = field(None, "index profile YAML of your catalog (with --catalog); default: the shipped Icecat profile")
    catalog: str | None = field(None, "your catalog as JSON Lines, described by --profile; default: the Icecat folder")
    judgments: str | None = field(None, "judgments CSV (query,docid,rating); default: Icecat's; none for --catalog without it")
    url: str | None = field(default_url(), "OpenSearch URL ($QRW_OPENSEARCH_URL or http://127.0.0.1:9200) for the agreement check of the in-process index (none: skip)")
    index: str = field("products", "index or alias the agreement check searches")
    # --- split
    seed: int = field(13, "seed for sampling")
    folds: int = field(5, "number of hash folds over the development queries")
    valid_fold: int = field(0, "the fold held out for validation (never trained on)")
    # --- pseudo-queries
    pseudo_queries: int = field(70_000, "pseudo-queries written from the catalog (0 disables)")
    # --- measuring
    merge_weight: float = field(0.5, "weight of a rewrite clause while its gain is measured")
    merge_operator: str = field("and", "operator of a rewrite clause while its gain is measured (and | or)")
    max_candidates: int = field(10, "candidate rewrites measured per query")
    encoder: str | None = field(None, "local sentence-transformers checkpoint: the catalog title phrases nearest each query join its candidates (none: off; see trainer/encoder_bridge.py)")
    encoder_neighbours: int = field(3, "title phrases proposed per query by --encoder")
    helps: float = field(0.03, "nDCG@10 gain from which a rewrite helps")
    hurts: float = field(-0.01, "nDCG@10 gain at or below which a rewrite hurts")
    on_intent: float = field(0.3, "share of its own top 10 of the asked-for kind that puts a rewrite on intent")
    # --- writing
    max_targets: int = field(3, "rewrites listed in one rewrite target")
    none_share: float = field(0.5, "largest share of 'none' targets among pseudo rewrite examples (train only)")
    judged_repeat: int = field(20, "times each judged training query's examples are repeated in the train files")
    max_class_ratio: float = field(3.0, "each tag class is cut to at most this many times the smallest (train only; 0 = off)")
    agreement_sample: int = field(400, "candidate gains compared between the in-process index and OpenSearch (0 = skip)")

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"folds={self.folds}: need at least 2 folds to hold one out")
        if not 0 <= self.valid_fold < self.folds:
            raise ValueError(f"valid_fold={self.valid_fold} must be in 0..{self.folds - 1}")
        if self.merge_operator not in ("and", "or"):
            raise ValueError(f"merge_operator={self.merge_operator!r}: choose and | or")
        if not 0.0 < self.merge_weight <= 10.0:
            raise ValueError(f"merge_weight={self.merge_weight} must be in (0, 10]")
        if not self.hurts < self.helps:
            raise ValueError(f"hurts={self.hurts} must be below helps={self.helps}")
        if not 0.0 <= self.none_share <= 1.0:
            raise ValueError(f"none_share={self.none_share} must be in [0, 1]")
        if self.encoder_neighbours < 1:
            raise ValueError(f"encoder_neighbours={self.encoder_neighbours} must be at least 1")

    @property
    def merge(self) -> MergeSettings:
        return MergeSettings(self.merge_weight, self.merge_operator)

    @property
    def rule(self) -> LabelRule:
        return LabelRule(self.helps, self.hurts, self.on_intent)


@dataclasses.dataclass
class Measured:
    """One training query with its measured candidates."""

    intent: Intent
    source: str  # judged | pseudo
    split: str  # train | valid
    base: float
    outcomes: list  # [Outcome]
    meta: dict


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text.casefold())


def target_rewrites(item: Measured, rule: LabelRule, limit: int) -> list[str]:
    """The candidates that help (tag exact), best gain first."""
    helping = [o for o in item.outcomes if rule.tag(o).name == "exact"]
    helping.sort(key=lambda o: (-o.gain, o.rewrite))
    return [o.rewrite for o in helping[:limit]]


def _intent_record(intent: Intent) -> dict:
    if intent.kind == "judged":
        return {"kind": "judged"}
    return {"kind": "pseudo", "ptype": intent.ptype, "brand": intent.brand, "values": sorted(intent.values)}


def _write_jsonl(path: Path, records: Iterable[dict]) -> int:
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data file not found: {path}", hint="run `qrw train data` first, or pass --data-dir")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _balance(records: list[dict], ratio: float, rng: random.Random) -> list[dict]:
    """Cut every tag class to at most ``ratio`` times the smallest one."""
    if ratio <= 0 or not records:
        return records
    by_tag: dict[str, list[dict]] = collections.defaultdict(list)
    for record in records:
        by_tag[record["tag"]].append(record)
    cap = max(int(min(len(v) for v in by_tag.values()) * ratio), 1)
    kept: list[dict] = []
    for tag in TAGS:
        group = by_tag.get(tag.name, [])
        kept.extend(rng.sample(group, cap) if len(group) > cap else group)
    rng.shuffle(kept)
    return kept


def _spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    import numpy as np

    if len(a) < 3:
        return None
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(float)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def gain_agreement(items: Sequence[Measured], url: str, alias: str, merge: MergeSettings, sample: int,
                   facets, rng: random.Random, baseline) -> dict:
    """Spearman correlation of candidate gains measured in process and on the real node, on a sample."""
    from qrw.search.connect import open_client
    from qrw.search.runner import search_many
    from qrw.trainer.intent import ndcg

    pairs = [(item, o) for item in items for o in item.outcomes]
    pairs = rng.sample(pairs, min(sample, len(pairs)))
    if not pairs:
        return {"pairs": 0}
    client = open_client(url)
    bodies = {}
    for n, (item, outcome) in enumerate(pairs):
        rewrite = baseline.clause(outcome.rewrite, boost=merge.weight)
        spec = next(iter(rewrite.values()))
        target = spec if "query" in spec else next(iter(spec.values()))
        target["operator"] = merge.operator
        bodies[("merged", n)] = {"query": {"bool": {"should": [baseline.clause(item.intent.query), rewrite]}}}
        bodies[("base", n)] = baseline.build(item.intent.query)
    rankings = search_many(client, alias, bodies, depth=10, batch_size=100, url=url)
    node = [ndcg(rankings[("merged", n)].ids, item.intent, facets) - ndcg(rankings[("base", n)].ids, item.intent, facets)
            for n, (item, _) in enumerate(pairs)]
    mine = [outcome.gain for _, outcome in pairs]
    same_sign = sum((a > 0) == (b > 0) and (a < 0) == (b < 0) for a, b in zip(node, mine)) / len(pairs)
    return {"pairs": len(pairs), "spearman_gain": _spearman(mine, node), "same_sign_share": same_sign,
            "mean_abs_diff": sum(abs(a - b) for a, b in zip(node, mine)) / len(pairs)}


def build_data(config: DataConfig, *, catalog=None, progress: bool = True) -> dict:
    """Build every file under ``config.output_dir``; return the data card (also written as JSON and markdown).

    ``catalog``: a ready ``TrainingCatalog`` (tests pass one to save loading it again); default: the
    one ``config`` names (``--profile`` and ``--catalog``, or the Icecat folder).
    """
    from tqdm import tqdm

    from qrw.eval.judgments import load_judgments
    from qrw.search.catalog import default_data_dir
    from qrw.trainer.bridge import catalog_texts, mine_bridge
    from qrw.trainer.candidates import CandidateGenerator, SpellingIndex
    from qrw.trainer.catalog import TrainingCatalog
    from qrw.trainer.facets import by_type
    from qrw.trainer.pseudo import describe, sample_pseudo_queries

    started = time.perf_counter()
    if catalog is None:
        catalog = TrainingCatalog.from_source(config.profile, config.catalog, config.data_dir)
    data_dir = Path(config.data_dir) if config.data_dir else default_data_dir()
    if config.judgments:
        judgments_path: Path | None = Path(config.judgments)
    else:
        judgments_path = None if config.catalog else data_dir / "judgments" / "judgments.csv"
    qrels = load_judgments(judgments_path) if judgments_path is not None else {}
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)

    facets = catalog.facets()
    members = by_type(facets)
    texts = catalog_texts(catalog.products)
    bridge = mine_bridge(texts)
    index = catalog.lexical_index()
    encoder_bridge = _encoder_bridge(config, catalog) if config.encoder else None
    generator = CandidateGenerator(index, facets, bridge, SpellingIndex(texts), max_candidates=config.max_candidates,
                                   encoder_bridge=encoder_bridge)
    train_queries, valid_queries = split_queries(qrels, config.folds, config.valid_fold)
    split_of = {q: "train" for q in train_queries} | {q: "valid" for q in valid_queries}

    pseudo = sample_pseudo_queries(facets, bridge, config.pseudo_queries, rng, exclude=valid_queries)
    # A training query written like a validation query ("smart watch" / "smartwatch") would leak it: left out.
    valid_keys = {squash(q) for q in valid_queries}
    work: list[tuple[Intent, str, str, dict]] = [
        (judged_intent(q, qrels[q], facets), "judged", split_of[q], {}) for q in qrels
        if split_of[q] == "valid" or squash(q) not in valid_keys
    ]
    for p in pseudo:
        split = "valid" if fold_of(p.query, config.folds) == config.valid_fold else "train"
        work.append((pseudo_intent(p.query, p.ptype, p.brand, p.values, facets, members), "pseudo", split,
                     {"template": p.template, "transforms": list(p.transforms)}))
    if encoder_bridge is not None:
        encoder_bridge.prime((intent.query for intent, *_ in work), progress=progress)
    items: list[Measured] = []
    for intent, source, split, meta in tqdm(work, desc="measuring candidates", unit="query", disable=not progress):
        base, outcomes = measure(index, facets, intent, generator.propose(intent.query), config.merge)
        items.append(Measured(intent, source, split, base, outcomes, meta))

    rule = config.rule
    files: dict[str, int] = {}
    examples: dict[str, list[dict]] = {}
    for split in ("train", "valid"):
        rewrite_records, tag_records = [], []
        for item in (i for i in items if i.split == split):
            targets = target_rewrites(item, rule, config.max_targets)
            record = {"prompt": rewrite_prompt(item.intent.query), "completion": rewrite_completion(targets),
                      "query": item.intent.query, "rewrites": targets, "source": item.source,
                      "base_ndcg": round(item.base, 4)}
            repeat = config.judged_repeat if (item.source == "judged" and split == "train") else 1
            rewrite_records += [record] * repeat
            for o in item.outcomes:
                tag = rule.tag(o)
                tag_records += [{"prompt": tag_prompt(item.intent.query, o.rewrite), "completion": tag_completion(tag),
                                 "query": item.intent.query, "rewrite": o.rewrite, "tag": tag.name, "gain": round(o.gain, 4),
                                 "own": round(o.own, 3), "added_hits": o.added_hits, "source": item.source}] * repeat
        if split == "train":
            tag_records = _balance(tag_records, config.max_class_ratio, rng)
            rewrite_records = _cap_none(rewrite_records, config.none_share, rng)
        examples[split] = rewrite_records + tag_records
        files[f"rewrite_{split}.jsonl"] = _write_jsonl(out / f"rewrite_{split}.jsonl", rewrite_records)
        files[f"tag_{split}.jsonl"] = _write_jsonl(out / f"tag_{split}.jsonl", tag_records)
    grpo = [{"prompt": rewrite_prompt(i.intent.query), "query": i.intent.query, "intent": json.dumps(_intent_record(i.intent))}
            for i in items if i.split == "train"]
    files["grpo_train.jsonl"] = _write_jsonl(out / "grpo_train.jsonl", grpo)
    # held-out pseudo-queries with their intents: `qrw train calibrate` chooses the gate on them
    files["calibration_pseudo.jsonl"] = _write_jsonl(out / "calibration_pseudo.jsonl", (
        {"query": i.intent.query, "ptype": i.intent.ptype, "brand": i.intent.brand, "values": sorted(i.intent.values)}
        for i in items if i.split == "valid" and i.source == "pseudo"))
    (out / "split.json").write_text(json.dumps({
        "method": "sha1(normalized casefolded query)[:8] mod folds; pseudo-queries by the same hash of their text",
        "folds": config.folds, "valid_fold": config.valid_fold,
        "train_queries": train_queries, "valid_queries": valid_queries,
    }, indent=2, ensure_ascii=False))

    agreement = {"pairs": 0, "note": "skipped"}
    if config.url and config.agreement_sample > 0:
        judged_train = [i for i in items if i.source == "judged" and i.split == "train"]
        pseudo_train = [i for i in items if i.source == "pseudo" and i.split == "train"]
        agreement = gain_agreement(judged_train + pseudo_train[: max(len(judged_train) * 4, config.agreement_sample)],
                                   config.url, config.index, config.merge, config.agreement_sample, facets, rng,
                                   catalog.baseline)
    card = _data_card(config, out, files, items, bridge, encoder_bridge, describe(pseudo), agreement, valid_queries, judgments_path,
                      catalog, facets.coverage(), rule, rng, time.perf_counter() - started)
    return card


def _encoder_bridge(config: DataConfig, catalog):
    """The sentence-encoder bridge over the catalog's title phrases; phrase vectors cached under the cache dir."""
    from qrw.trainer.encoder_bridge import EncoderBridge, SentenceEncoder, default_cache_dir, title_phrases

    return EncoderBridge(SentenceEncoder(config.encoder), title_phrases(p.title for p in catalog.products),
                         per_query=config.encoder_neighbours, cache_dir=default_cache_dir())


def _cap_none(records: list[dict], share: float, rng: random.Random) -> list[dict]:
    """Drop pseudo 'none' examples until they are at most ``share`` of all rewrite examples."""
    none = [r for r in records if not r["rewrites"] and r["source"] == "pseudo"]
    rest = [r for r in records if r["rewrites"] or r["source"] != "pseudo"]
    if share >= 1.0 or not records:
        return records
    allowed = int(share / (1.0 - share) * len(rest)) if share < 1.0 else len(none)
    kept = rest + (rng.sample(none, allowed) if len(none) > allowed else none)
    rng.shuffle(kept)
    return kept


def _leakage(items: Sequence[Measured], valid_queries: Sequence[str]) -> dict:
    valid = {squash(q) for q in valid_queries}
    train = [i.intent.query for i in items if i.split == "train"]
    exact = sorted({q for q in train if squash(q) in valid})
    contains = sorted({q for q in train for v in valid_queries if len(v) > 3 and f" {v.casefold()} " in f" {q.casefold()} "})
    return {"train_queries_equal_to_a_validation_query": len(exact), "examples_equal": exact[:10],
            "train_queries_containing_a_validation_query": len(contains), "examples_containing": contains[:10]}


def _encoder_summary(encoder_bridge, items) -> dict | None:
    """What the sentence-encoder bridge added: its weights, phrases and how many measured candidates came from it."""
    if encoder_bridge is None:
        return None
    from_encoder = [o for i in items for o in i.outcomes if o.rewrite in encoder_bridge.neighbours(i.intent.query)]
    return {"encoder": str(encoder_bridge.encoder.path), "fingerprint": encoder_bridge.encoder.fingerprint,
            "catalog_phrases": len(encoder_bridge.phrases), "per_query": encoder_bridge.per_query,
            "candidates_measured": len(from_encoder), "helping": sum(o.gain > 0 for o in from_encoder)}


def _data_card(config, out: Path, files, items, bridge, encoder_bridge, pseudo_stats, agreement, valid_queries, judgments_path, catalog,
               type_coverage, rule, rng, seconds) -> dict:
    from qrw.trainer.config import config_to_dict

    def count(name: str, key: str) -> dict:
        counter = collections.Counter(str(r[key]) for r in read_jsonl(out / name))
        return dict(sorted(counter.items()))

    rewrite_train = read_jsonl(out / "rewrite_train.jsonl")
    tag_train = read_jsonl(out / "tag_train.jsonl")
    samples = {
        "rewrite (judged)": rng.sample([r for r in rewrite_train if r["source"] == "judged"],
                                       min(20, sum(r["source"] == "judged" for r in rewrite_train))),
        "rewrite (pseudo, with targets)": rng.sample([r for r in rewrite_train if r["source"] == "pseudo" and r["rewrites"]],
                                                      min(20, sum(r["source"] == "pseudo" and bool(r["rewrites"]) for r in rewrite_train))),
        "rewrite (pseudo, none)": rng.sample([r for r in rewrite_train if r["source"] == "pseudo" and not r["rewrites"]],
                                             min(20, sum(r["source"] == "pseudo" and not r["rewrites"] for r in rewrite_train))),
    }
    for tag in TAGS:
        group = [r for r in tag_train if r["tag"] == tag.name]
        samples[f"tag {tag.name}"] = rng.sample(group, min(20, len(group)))
    card = {
        "format": DATA_FORMAT,
        "sources": {
            "catalog": f"{catalog.source} ({len(catalog.products)} products, profile {catalog.name!r})"
                       + ("; Icecat Open Content License, provided AS IS" if catalog.name == "icecat" else ""),
            "judgments": str(judgments_path) if judgments_path else None,
            "retrieval": f"in-process BM25 mirror of the profile's baseline {catalog.baseline.name} "
                         f"({', '.join(catalog.baseline.fields)}; trainer.lexical)",
            "product_type_coverage": round(type_coverage, 4),
        },
        "split": {"folds": config.folds, "valid_fold": config.valid_fold, "valid_queries": list(valid_queries)},
        "queries": dict(collections.Counter(f"{i.source}/{i.split}" for i in items)),
        "pseudo_queries": pseudo_stats,
        "bridge": {"pairs": len(bridge), "by_kind": bridge.counts(),
                   "examples": {k: bridge.examples(k, 8) for k in bridge.counts()}},
        "encoder_bridge": _encoder_summary(encoder_bridge, items),
        "label_rule": rule.describe(),
        "merge_while_measuring": dataclasses.asdict(config.merge),
        "candidates_measured": sum(len(i.outcomes) for i in items),
        "files": dict(files),
        "tag_balance": {name: count(name, "tag") for name in ("tag_train.jsonl", "tag_valid.jsonl")},
        "rewrite_targets": {name: dict(collections.Counter(
            f"{r['source']}/{'none' if not r['rewrites'] else 'rewrites'}" for r in read_jsonl(out / name)))
            for name in ("rewrite_train.jsonl", "rewrite_valid.jsonl")},
        "leakage_check": _leakage(items, valid_queries),
        "agreement_with_opensearch": agreement,
        "seconds": round(seconds, 1),
        "config": config_to_dict(config),
    }
    (out / "data_card.json").write_text(json.dumps({**card, "samples": samples}, indent=2, ensure_ascii=False))
    lines = [
        "# Data card: qrw rewriter training data",
        "",
        f"Built in {card['seconds']} s with seed {config.seed}. Format `{DATA_FORMAT}`; prompts from `qrw.plugin.prompt`.",
        "",
        "## Sources",
        f"- Catalog: {card['sources']['catalog']}; product type known for {type_coverage:.1%} of products",
        f"- Judgments: {judgments_path or 'none (pseudo-queries only)'} (only training folds are trained on)",
        f"- Retrieval: {card['sources']['retrieval']}",
        f"- Pseudo-queries: {pseudo_stats}",
        f"- Vocabulary bridge mined from the catalog: {len(bridge)} pairs {bridge.counts()}",
        f"- Sentence-encoder bridge (catalog title phrases nearest each query): {card['encoder_bridge'] or 'off'}",
        "",
        "## Labels",
        f"- Candidates measured: {card['candidates_measured']}, merged at weight {config.merge_weight} with operator {config.merge_operator}",
        f"- Tag mapping: {rule.describe()}",
        f"- Agreement of the in-process gain with OpenSearch: {agreement}",
        "",
        "## Split and leakage",
        f"- {config.folds} hash folds; fold {config.valid_fold} is validation ({len(valid_queries)} judged queries, never trained on)",
        f"- Queries by source/split: {card['queries']}",
        f"- Leakage check: {card['leakage_check']}",
        "",
        "## Sizes",
        *[f"- `{name}`: {n}" for name, n in files.items()],
        f"- Tag balance: {card['tag_balance']}",
        f"- Rewrite targets: {card['rewrite_targets']}",
        "",
    ]
    for kind, rows in samples.items():
        lines += [f"## 20 random examples: {kind}", ""]
        for r in rows:
            if "tag" in r:
                lines.append(f"- `{r['query']}` -> `{r['rewrite']}`: **{r['tag']}** (gain {r['gain']:+.3f}, own {r['own']:.2f}, {r['source']})")
            else:
                lines.append(f"- `{r['query']}` ->{r['completion']} (base nDCG@10 {r['base_ndcg']:.2f}, {r['source']})")
        lines.append("")
    (out / "data_card.md").write_text("\n".join(lines))
    return card
