"""Training data for the multi-task rewriter: rewrite pairs and graded relevance tags, from
retrieval against the real OpenSearch index.

Sources (all deterministic for a given seed, catalog and index):

* ``judged``: the development queries of the *training* folds. Candidate rewrites are mined from the
  titles of their grade-3 products (product type, brand + type, type + key attribute, ...), ranked
  by how much more often they describe grade-3 than low-grade (0-1) products, and searched. A
  candidate becomes a rewrite example when its own top-k, judged against the original query, is
  mostly grade >= 2 (``accept_share`` of the judged hits). Every searched candidate becomes a tagging
  example labelled with the mean judged grade of its top-k.
* ``pseudo``: pseudo-queries written the way users type (lowercase, brand dropped, user words like
  "laptop" for the catalog's "notebook", squashed units "32gb", a misspelling, a dropped or extra
  word) from sampled catalog products, paired with a catalog-vocabulary rewrite
  ``{Brand} {product type} {key attribute}``. The rewrite is kept when it retrieves the source
  product; its tag is the mean pseudo-grade of its top-k (``facets.hit_grade``: the source and exact
  neighbours 3, same brand and type 2, same type 1, other 0).
* ``drift`` (hard negatives, tagging only): accepted rewrites with the brand swapped, the product
  type swapped, or a number changed or dropped; labelled by retrieval like the rest, capped by the
  kind of drift (``DRIFT_CAPS``).

Folds: every development query is assigned to one of ``folds`` folds by a hash of its text; fold
``valid_fold`` is validation and is never trained on (its examples are written to ``*_valid.jsonl``
for ``qrw train evaluate``). Pseudo-queries are split the same way by product id, and a pseudo-query
equal to a validation query is dropped.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import random
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from qrw.errors import ConfigError
from qrw.eval.folds import fold_of, split_queries
from qrw.plugin.prompt import TAGS, normalize_text, rewrite_completion, rewrite_prompt, tag_completion, tag_for_grade, tag_prompt
from qrw.search.catalog import Product
from qrw.trainer.config import field
from qrw.trainer.facets import Facets, facets_of, hit_grade, numbers_in, squash
from qrw.trainer.retrieval import Searcher, judged_grade, share_relevant

DATA_FORMAT = "qrw-data-1"

# User vocabulary for catalog product types (applied to pseudo-queries only). Written a priori from
# how shoppers commonly name electronics, not read from the judged queries.
USER_WORDS: dict[str, tuple[str, ...]] = {
    "notebook": ("laptop",),
    "mobile phone": ("cell phone", "phone"),
    "smartphone": ("phone", "cell phone"),
    "hard disk drive": ("hdd", "hard drive"),
    "internal hard drive": ("hdd", "hard drive"),
    "solid state drive": ("ssd",),
    "usb flash drive": ("usb stick", "thumb drive"),
    "memory card": ("sd card",),
    "memory module": ("ram",),
    "toner cartridge": ("toner",),
    "ink cartridge": ("ink",),
    "networking card": ("wifi adapter", "network card"),
    "graphics card": ("gpu", "video card"),
    "headset": ("headphones with mic",),
    "headphones": ("headphone", "earphones"),
    "mouse": ("mice",),
    "keyboard": ("keybord",),
    "computer monitor": ("monitor", "screen"),
    "flat panel desk mount": ("monitor arm",),
    "television": ("tv",),
    "power adapter": ("charger", "power supply"),
    "notebook case": ("laptop bag", "laptop case"),
    "tablet case": ("ipad case", "tablet cover"),
    "rechargeable battery": ("batteries",),
    "docking station": ("dock",),
    "cable": ("cord",),
}
_STANDALONE_NUMBER = re.compile(r"(?<![A-Za-z0-9.,])\d+(?:[.,]\d+)?")
EXTRA_WORDS = ("cheap", "best", "new", "buy", "good", "original", "sale")
DRIFT_CAPS: dict[str, int] = {"type": 0, "brand": 1, "number_changed": 1, "number_dropped": 2}
"""Highest grade a drifted rewrite may be labelled: a wrong product type is never relevant; a wrong
brand or number is at most weak; a dropped number broadens the search and is at most a substitute."""


@dataclasses.dataclass
class DataConfig:
    """``qrw train data``: build the JSONL training and validation sets and their data card."""

    # --- inputs
    output_dir: str = field("runs/data", "folder for the JSONL files and the data card")
    data_dir: str | None = field(None, "Icecat folder (products/, judgments/); default: QRW_DATA_DIR or shared/data/icecat")
    judgments: str | None = field(None, "judgments CSV; default: <data_dir>/judgments/judgments.csv")
    url: str = field("http://127.0.0.1:9200", "OpenSearch URL (the catalog indexed with `qrw index`)")
    index: str = field("products", "index or alias to search")
    # --- split
    seed: int = field(13, "seed for sampling and noise")
    folds: int = field(5, "number of hash folds over the development queries")
    valid_fold: int = field(0, "the fold held out for validation (never trained on)")
    # --- retrieval labels
    k: int = field(10, "top-k searched for every candidate rewrite")
    min_judged: int = field(3, "judged hits needed in the top-k to label a judged-query candidate")
    accept_share: float = field(0.6, "share of judged top-k hits with grade >= 2 for a mined rewrite to be kept")
    max_candidates: int = field(12, "candidate rewrites mined per development query")
    # --- pseudo-queries
    pseudo_products: int = field(2000, "catalog products sampled for pseudo-queries (0 disables)")
    pseudo_accept_grade: float = field(1.5, "mean pseudo-grade of the top-k for a pseudo rewrite to be kept")
    # --- hard negatives and balance
    drifts_per_rewrite: int = field(2, "drifted variants (hard negatives) made per accepted rewrite")
    max_class_ratio: float = field(3.0, "each tag class is cut to at most this many times the smallest class (train only; 0 = off)")

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"folds={self.folds}: need at least 2 folds to hold one out")
        if not 0 <= self.valid_fold < self.folds:
            raise ValueError(f"valid_fold={self.valid_fold} must be in 0..{self.folds - 1}")
        if not 0.0 < self.accept_share <= 1.0:
            raise ValueError(f"accept_share={self.accept_share} must be in (0, 1]")
        if self.k < 1 or self.max_candidates < 1:
            raise ValueError("k and max_candidates must be at least 1")


def _same(a: str, b: str) -> bool:
    return squash(a) == squash(b)


# ----------------------------------------------------------------------------------------------
# Mining rewrites for judged queries


def _candidates_from(facets: Facets, query: str) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    t, b, k = facets.product_type, facets.brand, facets.key
    if t:
        out.append((t, {"type": t}))
        if b:
            out.append((f"{b} {t}", {"brand": b, "type": t}))
        if k:
            out.append((f"{t} {k}", {"type": t, "key": k}))
            if b:
                out.append((f"{b} {t} {k}", {"brand": b, "type": t, "key": k}))
        if t.casefold() not in query.casefold():
            out.append((f"{query} {t}", {"type": t}))
    return out


def mine_candidates(query: str, judged: Mapping[str, int], facets_by_id: Mapping[str, Facets], limit: int) -> list[tuple[str, dict]]:
    """Candidate rewrites of ``query`` from its grade-3 products, most discriminative first."""
    top_grade = 3 if any(g == 3 for g in judged.values()) else 2
    good = [facets_by_id[d] for d, g in judged.items() if g >= top_grade and d in facets_by_id]
    low = [facets_by_id[d] for d, g in judged.items() if g <= 1 and d in facets_by_id]
    meta: dict[str, dict] = {}
    for product in good:
        for text, info in _candidates_from(product, query):
            text = normalize_text(text)
            if text and not _same(text, query):
                meta.setdefault(text, info)

    def describes(text: str, product: Facets) -> bool:
        title = product.title_lower + " " + product.brand.casefold()
        return all(word in title for word in text.casefold().split())

    scored = []
    for text in meta:
        score = sum(describes(text, p) for p in good) / max(len(good), 1) - sum(describes(text, p) for p in low) / max(len(low), 1)
        scored.append((-score, len(text), text))
    scored.sort()
    return [(text, meta[text]) for neg, _, text in scored[:limit] if -neg > 0]


# ----------------------------------------------------------------------------------------------
# Pseudo-queries


def _misspell(word: str, rng: random.Random) -> str:
    if len(word) < 5 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 2)
    op = rng.choice(("swap", "drop", "double"))
    if op == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if op == "drop":
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def _user_key(key: str, rng: random.Random) -> str:
    key = key.replace('"', " inch").strip()
    return squash(key) if rng.random() < 0.6 else key.casefold()


def pseudo_query(facets: Facets, rng: random.Random) -> tuple[str, str] | None:
    """(user-style query, catalog-vocabulary rewrite) for one product, or None if it has no type."""
    if not facets.product_type or not facets.brand:
        return None
    rewrite = " ".join(part for part in (facets.brand, facets.product_type, facets.key) if part)
    ptype = facets.product_type
    for catalog_word, user_words in USER_WORDS.items():
        if catalog_word in ptype and rng.random() < 0.7:
            ptype = ptype.replace(catalog_word, rng.choice(user_words))
            break
    words: list[str] = []
    if rng.random() < 0.75:
        words.append(facets.brand.casefold())
    words.extend(ptype.split())
    if facets.key and rng.random() < 0.7:
        words.append(_user_key(facets.key, rng))
    if rng.random() < 0.25:
        j = rng.randrange(len(words))
        words[j] = _misspell(words[j], rng)
    if len(words) > 2 and rng.random() < 0.15:
        words.pop(rng.randrange(len(words)))
    if rng.random() < 0.15:
        words.insert(rng.randrange(len(words) + 1), rng.choice(EXTRA_WORDS))
    if rng.random() < 0.2:
        rng.shuffle(words)
    query = normalize_text(" ".join(words))
    if not query or _same(query, rewrite):
        return None
    return query, rewrite


# ----------------------------------------------------------------------------------------------
# Drift (hard negatives)


def drift_variants(rewrite: str, info: Mapping[str, str], pools: Mapping[str, Sequence[str]], rng: random.Random) -> list[tuple[str, str]]:
    """(drift kind, drifted rewrite) variants of ``rewrite``: brand, type, number changed or dropped."""
    out: list[tuple[str, str]] = []
    lower = rewrite.casefold()
    brand = info.get("brand", "")
    if brand and brand.casefold() in lower:
        others = [b for b in pools["brand"] if b.casefold() != brand.casefold()]
        if others:
            start = lower.index(brand.casefold())
            out.append(("brand", rewrite[:start] + rng.choice(others) + rewrite[start + len(brand) :]))
    ptype = info.get("type", "")
    if ptype and ptype in lower:
        others = [t for t in pools["type"] if t != ptype and t not in ptype and ptype not in t]
        if others:
            start = lower.index(ptype)
            out.append(("type", rewrite[:start] + rng.choice(others) + rewrite[start + len(ptype) :]))
    numbers = _STANDALONE_NUMBER.findall(rewrite)
    if numbers:
        number = numbers[0]
        value = float(number)
        changed = value * 2 if rng.random() < 0.5 or value < 2 else value / 2
        new = str(int(changed)) if changed == int(changed) else f"{changed:g}"
        out.append(("number_changed", rewrite.replace(number, new, 1)))
        key = info.get("key", "")
        dropped = rewrite.replace(key, "") if key and key in rewrite else rewrite.replace(number, "", 1)
        out.append(("number_dropped", normalize_text(dropped)))
    out = [(kind, normalize_text(text)) for kind, text in out if normalize_text(text) and not _same(text, rewrite)]
    rng.shuffle(out)
    return out


# ----------------------------------------------------------------------------------------------
# Building


@dataclasses.dataclass
class Example:
    query: str
    rewrite: str
    source: str  # judged | pseudo
    split: str  # train | valid
    grade: float | None = None  # mean (pseudo-)grade of the rewrite's top-k; None = not labelled
    drift: str | None = None
    source_id: str | None = None  # pseudo-queries: the product they were made from
    original: str | None = None  # drifted examples: the drifted facet's original value

    def drift_applies(self) -> bool:
        """A drift caps the label only if the query asked for what was drifted (a pseudo-query always did;
        a judged query like "huawei" did not ask for a product type, so "huawei mouse" is judged by retrieval)."""
        if self.drift is None:
            return False
        if self.source == "pseudo" or self.original is None:
            return True
        query = self.query.casefold()
        words = set(re.findall(r"\w+", query))
        if self.drift == "brand":
            return bool(self.original) and all(w in words for w in re.findall(r"\w+", self.original.casefold()))
        if self.drift == "type":
            return bool(self.original) and any(w in words for w in re.findall(r"\w+", self.original.casefold()))
        return bool(numbers_in(self.query))

    def tag_record(self) -> dict:
        tag = tag_for_grade(self.grade)
        if self.drift_applies():
            cap = DRIFT_CAPS[self.drift]
            if tag.grade > cap:
                tag = next(t for t in TAGS if t.grade == cap)
        return {
            "prompt": tag_prompt(self.query, self.rewrite),
            "completion": tag_completion(tag),
            "query": self.query,
            "rewrite": self.rewrite,
            "tag": tag.name,
            "grade": None if self.grade is None else round(self.grade, 4),
            "source": self.source if self.drift is None else f"{self.source}-drift-{self.drift}",
        }

    def rewrite_record(self) -> dict:
        return {
            "prompt": rewrite_prompt(self.query),
            "completion": rewrite_completion(self.rewrite),
            "query": self.query,
            "rewrite": self.rewrite,
            "source": self.source,
            "grade": None if self.grade is None else round(self.grade, 4),
        }


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
    if ratio <= 0:
        return records
    by_tag: dict[str, list[dict]] = collections.defaultdict(list)
    for record in records:
        by_tag[record["tag"]].append(record)
    smallest = min(len(v) for v in by_tag.values()) if by_tag else 0
    cap = max(int(smallest * ratio), 1)
    kept: list[dict] = []
    for tag in TAGS:
        group = by_tag.get(tag.name, [])
        if len(group) > cap:
            group = rng.sample(group, cap)
        kept.extend(group)
    return kept


def build_data(config: DataConfig, *, catalog: Sequence[Product] | None = None, searcher: Searcher | None = None,
               progress: bool = True) -> dict:
    """Build every file under ``config.output_dir``; return the data card (also written as JSON and markdown)."""
    from tqdm import tqdm

    from qrw.eval.judgments import load_judgments
    from qrw.search.catalog import default_data_dir, load_catalog

    started = time.perf_counter()
    data_dir = Path(config.data_dir) if config.data_dir else default_data_dir()
    judgments_path = Path(config.judgments) if config.judgments else data_dir / "judgments" / "judgments.csv"
    qrels = load_judgments(judgments_path)
    if catalog is None:
        catalog = load_catalog(data_dir)
    if searcher is None:
        searcher = Searcher.connect(config.url, config.index, depth=config.k)
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)

    facets_by_id = {p.id: facets_of(p) for p in catalog}
    types_by_brand: dict[str, set[str]] = collections.defaultdict(set)
    for f in facets_by_id.values():
        if f.product_type and f.brand:
            types_by_brand[f.brand].add(f.product_type)
    type_counts = collections.Counter(f.product_type for f in facets_by_id.values() if f.product_type)
    pools = {
        "brand": sorted(b for b, ts in types_by_brand.items() if len(ts) >= 3),
        "type": sorted(t for t, n in type_counts.items() if n >= 20),
    }

    train_queries, valid_queries = split_queries(qrels, config.folds, config.valid_fold)
    valid_keys = {squash(q) for q in valid_queries}
    split_of = {q: "train" for q in train_queries} | {q: "valid" for q in valid_queries}

    # 1. judged queries: mine candidates, search, label with the original query's judgments
    candidates: list[tuple[str, str, dict]] = []
    for query in qrels:
        for text, info in mine_candidates(query, qrels[query], facets_by_id, config.max_candidates):
            candidates.append((query, text, info))
    bar = tqdm(total=4, desc="building data", unit="stage", disable=not progress)
    results = searcher.search(text for _, text, _ in candidates)
    bar.update(1)
    examples: list[Example] = []
    accepted: list[tuple[Example, dict]] = []
    for query, text, info in candidates:
        ranked = results[text]
        grade = judged_grade(ranked, qrels[query], config.k, min_judged=config.min_judged)
        if grade is None:
            continue
        example = Example(query, text, "judged", split_of[query], grade)
        examples.append(example)
        share = share_relevant(ranked, qrels[query], config.k, min_judged=config.min_judged)
        if share is not None and share >= config.accept_share:
            accepted.append((example, info))

    # 2. pseudo-queries from sampled products
    pseudo: list[tuple[Example, dict]] = []
    if config.pseudo_products > 0:
        eligible = sorted((f for f in facets_by_id.values() if f.product_type and f.brand), key=lambda f: f.id)
        sample = rng.sample(eligible, min(config.pseudo_products, len(eligible)))
        made = []
        for f in sample:
            pair = pseudo_query(f, rng)
            if pair is None or squash(pair[0]) in valid_keys:
                continue
            made.append((f, pair[0], pair[1]))
        results = searcher.search(rewrite for _, _, rewrite in made)
        for f, query, rewrite in made:
            ranked = results[rewrite][: config.k]
            grades = [hit_grade(f, facets_by_id.get(doc)) for doc in ranked] + [0] * (config.k - len(ranked))
            grade = sum(grades) / config.k
            split = "valid" if fold_of(f.id, config.folds) == config.valid_fold else "train"
            example = Example(query, rewrite, "pseudo", split, grade, source_id=f.id)
            examples.append(example)
            if f.id in ranked and grade >= config.pseudo_accept_grade:
                info = {"brand": f.brand, "type": f.product_type, "key": f.key}
                pseudo.append((example, info))
    bar.update(1)

    # 3. hard negatives: drift accepted rewrites, label by retrieval, cap by drift kind
    drifted: list[tuple[Example, str, str]] = []
    for example, info in accepted + pseudo:
        for kind, text in drift_variants(example.rewrite, info, pools, rng)[: config.drifts_per_rewrite]:
            drifted.append((example, kind, text, info))
    results = searcher.search(text for _, _, text, _ in drifted)
    for base, kind, text, info in drifted:
        ranked = results[text][: config.k]
        if base.source == "judged":
            grade = judged_grade(ranked, qrels[base.query], config.k, min_judged=config.min_judged)
            if grade is None:
                grade = float(DRIFT_CAPS[kind])  # no judged evidence: the drift rule decides
        else:
            source = facets_by_id[base.source_id]
            grade = sum(hit_grade(source, facets_by_id.get(doc)) for doc in ranked) / config.k
        examples.append(Example(base.query, text, base.source, base.split, grade, drift=kind,
                                source_id=base.source_id, original=info.get({"brand": "brand", "type": "type"}.get(kind, "key"))))
    bar.update(1)

    # 4. write files
    rewrites = [e for e, _ in accepted] + [e for e, _ in pseudo]
    files: dict[str, int] = {}
    for split in ("train", "valid"):
        rewrite_records = [e.rewrite_record() for e in rewrites if e.split == split]
        tag_records = [e.tag_record() for e in examples if e.split == split]
        if split == "train":
            tag_records = _balance(tag_records, config.max_class_ratio, rng)
        files[f"rewrite_{split}.jsonl"] = _write_jsonl(out / f"rewrite_{split}.jsonl", rewrite_records)
        files[f"tag_{split}.jsonl"] = _write_jsonl(out / f"tag_{split}.jsonl", tag_records)
    # GRPO prompts: training queries (judged train fold + pseudo train), with the columns rewards need
    grpo = [{"prompt": rewrite_prompt(q), "query": q, "kind": "judged", "source_id": ""} for q in train_queries]
    seen = {squash(q) for q in train_queries}
    for example, _ in pseudo:
        if example.split == "train" and squash(example.query) not in seen:
            seen.add(squash(example.query))
            grpo.append({"prompt": rewrite_prompt(example.query), "query": example.query, "kind": "pseudo",
                         "source_id": example.source_id})
    files["grpo_train.jsonl"] = _write_jsonl(out / "grpo_train.jsonl", grpo)
    split_record = {
        "method": "sha1(normalized casefolded query)[:8] mod folds; pseudo-queries by product id",
        "folds": config.folds,
        "valid_fold": config.valid_fold,
        "train_queries": train_queries,
        "valid_queries": valid_queries,
    }
    (out / "split.json").write_text(json.dumps(split_record, indent=2, ensure_ascii=False))
    bar.update(1)
    bar.close()

    card = _data_card(config, out, files, judgments_path, data_dir, len(catalog), train_queries, valid_queries,
                      len(candidates), len(accepted), len(pseudo), time.perf_counter() - started)
    return card


def _count(path: Path, key: str) -> dict[str, int]:
    counter = collections.Counter(record[key] for record in read_jsonl(path))
    return dict(sorted(counter.items()))


def _data_card(config: DataConfig, out: Path, files: Mapping[str, int], judgments_path: Path, data_dir: Path,
               catalog_size: int, train_queries: list[str], valid_queries: list[str], n_candidates: int,
               n_accepted: int, n_pseudo: int, seconds: float) -> dict:
    from qrw.trainer.config import config_to_dict

    card = {
        "format": DATA_FORMAT,
        "sources": {
            "catalog": f"{data_dir} ({catalog_size} products; Icecat Open Content License, provided AS IS)",
            "judgments": str(judgments_path),
            "index": f"{config.url} / {config.index}",
        },
        "split": {"folds": config.folds, "valid_fold": config.valid_fold, "train_queries": len(train_queries),
                  "valid_queries": len(valid_queries), "valid_query_list": valid_queries},
        "mining": {"judged_candidates_searched": n_candidates, "judged_rewrites_accepted": n_accepted,
                   "pseudo_rewrites_accepted": n_pseudo},
        "files": dict(files),
        "tag_balance": {name: _count(out / name, "tag") for name in ("tag_train.jsonl", "tag_valid.jsonl")},
        "tag_sources": {name: _count(out / name, "source") for name in ("tag_train.jsonl", "tag_valid.jsonl")},
        "rewrite_sources": {name: _count(out / name, "source") for name in ("rewrite_train.jsonl", "rewrite_valid.jsonl")},
        "drift_caps": DRIFT_CAPS,
        "seconds": round(seconds, 1),
        "config": config_to_dict(config),
    }
    (out / "data_card.json").write_text(json.dumps(card, indent=2, ensure_ascii=False))
    lines = [
        "# Data card: qrw rewriter training data",
        "",
        f"Built in {card['seconds']} s with seed {config.seed}. Format `{DATA_FORMAT}`; prompts from `qrw.plugin.prompt`.",
        "",
        "## Sources",
        f"- Catalog: {card['sources']['catalog']}",
        f"- Judgments: {card['sources']['judgments']} (development queries)",
        f"- Retrieval labels: baseline multi_match on {card['sources']['index']}, top-{config.k}",
        "- Pseudo-queries: user-style queries generated from sampled catalog products (see `trainer/data.py`)",
        "- Hard negatives: drifted rewrites (brand, product type, number changed or dropped), capped at "
        + ", ".join(f"{k} <= {v}" for k, v in DRIFT_CAPS.items()),
        "",
        "## Split",
        f"- {config.folds} hash folds; fold {config.valid_fold} is validation: {len(valid_queries)} queries held out, "
        f"{len(train_queries)} used for training. Validation queries are never trained on.",
        f"- Validation queries: {', '.join(valid_queries)}",
        "",
        "## Sizes",
        *[f"- `{name}`: {n}" for name, n in files.items()],
        f"- judged candidates searched: {n_candidates}; accepted as rewrites: {n_accepted}; pseudo rewrites accepted: {n_pseudo}",
        "",
        "## Tag balance",
        *[f"- `{name}`: " + ", ".join(f"{k} {v}" for k, v in counts.items()) for name, counts in card["tag_balance"].items()],
        "",
    ]
    (out / "data_card.md").write_text("\n".join(lines))
    return card
