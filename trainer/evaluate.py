"""``qrw train evaluate``: the rewriter on the validation fold, several checkpoints side by side.

Metrics per model:

* ``tag_accuracy`` and ``tag_macro_f1``: argmax tag on ``tag_valid.jsonl`` against the retrieval labels;
* ``tag_auc_exact`` / ``tag_auc_irrelevant``: how well P(exact) / P(irrelevant) rank pairs of that
  label above the others (1 = perfectly, 0.5 = chance);
* ``rewrite_relevance_rate``: share of generated rewrites whose own top 10 has a mean judged grade
  >= 2 for the original query (unjudged = 0; ``qrw.eval.compare.rewrite_relevance``, the same
  definition the comparison harness reports), over the validation development queries;
* ``duplicate_rate``: share of generated outputs repeating an earlier one for the same query;
* ``copy_rate``: share of generated outputs equal to the query; ``empty_rate``: nothing parsable.

Pass ``--model sft=runs/sft --model grpo=runs/grpo`` to see before and after GRPO together.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

from qrw.plugin.prompt import TAGS, normalize_text
from qrw.search.connect import default_url
from qrw.trainer.config import config_to_dict, field


@dataclasses.dataclass
class EvaluateConfig:
    """``qrw train evaluate``."""

    models: list[str] = field([], "checkpoints to compare, as NAME=DIR or DIR (e.g. sft=runs/sft grpo=runs/grpo)")
    data_dir: str = field("runs/data", "folder written by `qrw train data` (split.json, tag_valid.jsonl)")
    output_dir: str = field("runs/eval", "where eval_report.{json,md} go")
    url: str = field(default_url(), "OpenSearch URL ($QRW_OPENSEARCH_URL or http://127.0.0.1:9200)")
    index: str = field("products", "index or alias")
    num_rewrites: int = field(4, "rewrites generated per validation query")
    strategy: str = field("greedy", "sample | beam | greedy (one sequence lists the rewrites, prompt v2)")
    temperature: float = field(0.8, "sampling temperature")
    max_new_tokens: int = field(24, "tokens generated per rewrite")
    max_tag_examples: int = field(2000, "evaluate at most this many tagging examples, sampled with the seed (0 = all)")
    seed: int = field(0, "sampling seed")

    def __post_init__(self) -> None:
        if self.strategy not in ("sample", "beam", "greedy"):
            raise ValueError(f"strategy={self.strategy!r}: choose sample, beam or greedy")
        if self.num_rewrites < 1:
            raise ValueError("num_rewrites must be at least 1")


def macro_f1(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> float:
    """Unweighted mean of per-label F1 over ``labels`` present in gold or predictions."""
    scores = []
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(gold, predicted))
        fp = sum(g != label and p == label for g, p in zip(gold, predicted))
        fn = sum(g == label and p != label for g, p in zip(gold, predicted))
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


def rank_auc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """P(a positive scores above a negative), ties counting half (the Mann-Whitney AUC); None if a
    side is empty. Why: accuracy hides whether P(tag) *orders* pairs, which is what a gate threshold needs."""
    if not positive or not negative:
        return None
    wins = sum((a > b) + 0.5 * (a == b) for a in positive for b in negative)
    return wins / (len(positive) * len(negative))


def generation_rates(queries: Sequence[str], outputs: Sequence[Sequence[str | None]]) -> dict[str, float]:
    """Duplicate, copy and empty rates over all generated outputs."""
    total = dup = copy = empty = 0
    for query, row in zip(queries, outputs):
        seen: set[str] = set()
        for text in row:
            total += 1
            if text is None:
                empty += 1
                continue
            key = normalize_text(text).casefold()
            if key == normalize_text(query).casefold():
                copy += 1
            if key in seen:
                dup += 1
            seen.add(key)
    return {"duplicate_rate": dup / total if total else 0.0, "copy_rate": copy / total if total else 0.0,
            "empty_rate": empty / total if total else 0.0}


def _parse_models(specs: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        out.append((name, path) if sep else (Path(spec).name, spec))
    return out


def evaluate_model(model, *, valid_queries: Sequence[str], tag_rows: Sequence[dict], qrels, client, index: str,
                   num_rewrites: int) -> dict:
    """Every metric for one ``RewriteModel`` (anything with generate_raw/generate and tag)."""
    from qrw.eval.compare import RewriteOutcome, rewrite_relevance

    started = time.perf_counter()
    probs = model.tag([(r["query"], r["rewrite"]) for r in tag_rows]) if tag_rows else []
    names = [t.name for t in TAGS]
    predicted = [max(names, key=p.get) for p in probs]
    gold = [r["tag"] for r in tag_rows]
    accuracy = sum(g == p for g, p in zip(gold, predicted)) / len(gold) if gold else 0.0
    raw = model.generate_raw(list(valid_queries), num_rewrites)
    rates = generation_rates(valid_queries, raw)
    outcomes = {}
    for query, row in zip(valid_queries, raw):
        rewrites = list(dict.fromkeys(t for t in row if t is not None))
        outcomes[query] = RewriteOutcome(rewrites, [], 0.0)
    pairs = [(q, r) for q, outcome in outcomes.items() for r in outcome.rewrites]
    relevance = rewrite_relevance(client, index, pairs, qrels)
    return {
        "tag_examples": len(gold),
        "tag_accuracy": accuracy,
        "tag_macro_f1": macro_f1(gold, predicted, names),
        **{f"tag_auc_{name}": rank_auc([p[name] for p, g in zip(probs, gold) if g == name],
                                       [p[name] for p, g in zip(probs, gold) if g != name]) for name in ("exact", "irrelevant")},
        "validation_queries": len(valid_queries),
        "rewrites_generated": sum(len(o.rewrites) for o in outcomes.values()),
        "queries_without_rewrite": sum(not o.rewrites for o in outcomes.values()) / max(len(outcomes), 1),
        "rewrite_relevance_rate": relevance if relevance is not None else 0.0,
        **rates,
        "seconds": round(time.perf_counter() - started, 1),
        "examples": {q: outcomes[q].rewrites for q in list(valid_queries)[:5]},
    }


METRICS = ("tag_accuracy", "tag_macro_f1", "tag_auc_exact", "tag_auc_irrelevant", "rewrite_relevance_rate", "queries_without_rewrite", "duplicate_rate",
           "copy_rate", "empty_rate")


def run_evaluate(config: EvaluateConfig) -> dict:
    """Evaluate every model; write ``eval_report.json`` and ``eval_report.md``; return the report."""
    from qrw.errors import ConfigError
    from qrw.eval.judgments import load_judgments
    from qrw.search.connect import open_client
    from qrw.trainer.data import read_jsonl
    from qrw.trainer.model import TorchRewriteModel

    if not config.models:
        raise ConfigError("no model to evaluate", hint="pass --model NAME=DIR (repeatable)")
    data_dir = Path(config.data_dir)
    split = json.loads((data_dir / "split.json").read_text())
    card = json.loads((data_dir / "data_card.json").read_text())
    qrels = load_judgments(card["sources"]["judgments"])
    valid_queries = split["valid_queries"]
    tag_rows = read_jsonl(data_dir / "tag_valid.jsonl")
    if config.max_tag_examples and len(tag_rows) > config.max_tag_examples:
        import random

        tag_rows = random.Random(config.seed).sample(tag_rows, config.max_tag_examples)
    client = open_client(config.url)
    results = {}
    for name, path in _parse_models(config.models):
        model = TorchRewriteModel(path, strategy=config.strategy, temperature=config.temperature,
                                  max_new_tokens=config.max_new_tokens, seed=config.seed)
        results[name] = evaluate_model(model, valid_queries=valid_queries, tag_rows=tag_rows, qrels=qrels,
                                       client=client, index=config.index, num_rewrites=config.num_rewrites)
    report = {"models": dict(_parse_models(config.models)), "results": results, "config": config_to_dict(config),
              "valid_fold": split["valid_fold"], "validation_queries": valid_queries}
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    (out / "eval_report.md").write_text(format_report(results))
    return report


def format_report(results: dict) -> str:
    names = list(results)
    lines = ["# Rewriter evaluation (validation fold)", "", "| metric | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for metric in METRICS:
        lines.append(f"| {metric} | " + " | ".join("–" if results[n][metric] is None else f"{results[n][metric]:.3f}" for n in names) + " |")
    lines.append("")
    lines.append("rewrite_relevance_rate: share of rewrites whose own top 10 has mean judged grade >= 2 (unjudged = 0).")
    return "\n".join(lines) + "\n"
