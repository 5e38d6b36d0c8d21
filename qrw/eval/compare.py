"""Side-by-side comparison of retrieval systems on one index and one judgments file.

Systems:

* ``original``: the strongest baseline (``qrw.search.baseline.DEFAULT_BASELINE``), the reference;
* ``legacy``: the project's first baseline query (best_fields, standard analyzer), kept for comparison;
* ``prf``: pseudo-relevance feedback from the top 10 titles (``qrw.eval.prf``), a classic expansion;
* ``ungated[:MODEL]``: the plugin's serving chain with the gate and the guards taken out: every rewrite of the
  model OR-merged at the gate's full weight, beside the same index respelling and zero-hit retry as ``gated``;
* ``gated[:MODEL]``: the plugin's serving policy: guards, then the gate decides full weight,
  down-weight or drop per rewrite; the index respelling (``qrw.plugin.respell``) joins the kept rewrites,
  and a search that finds nothing is retried (``qrw.plugin.recovery``).

Rewrite clauses are merged with the plugin's ``merge.rewrite_operator`` and ``merge.mode``, as serving does. The
plugin configuration is the model's shipped ``serving.yaml`` (calibrated on training folds) unless
a file is given.

For a model, rewrites and tags are produced once per query and shared by ``ungated`` and ``gated``,
so the two differ only by the gate. Every clause carries a ``_name``; the hits' ``matched_queries``
give the *increment*: relevant documents (grade >= 2) in the top 100 that no original clause matched.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from opensearchpy import OpenSearch
from tqdm import tqdm

from qrw.errors import ConfigError
from qrw.eval.judgments import Qrels
from qrw.eval.metrics import RELEVANT_GRADE, mean_metrics, query_metrics
from qrw.eval.runs import client_missing_index
from qrw.search.baseline import DEFAULT_BASELINE
from qrw.eval.stats import bootstrap_ci, harm_rate, percentile, randomization_test, win_rate
from qrw.search.connect import translate_errors
from qrw.search.runner import Ranking, search_many

ORIGINAL_CLAUSE = "qrw:original"  # = qrw.plugin.merge.ORIGINAL_NAME; prf names its original clause alike
KNOWN_KINDS = ("original", "legacy", "prf", "ungated", "gated")

log = logging.getLogger("qrw.eval")


@dataclasses.dataclass(frozen=True)
class SystemSpec:
    """One system of the comparison, parsed from ``kind`` or ``kind:model_dir``."""

    kind: str
    model: str | None = None

    @property
    def name(self) -> str:
        if self.model is None:
            return self.kind
        return f"{self.kind}:{Path(self.model).name}"

    @classmethod
    def parse(cls, text: str, default_model: str | None) -> SystemSpec:
        kind, _, model = text.strip().partition(":")
        if kind not in KNOWN_KINDS:
            raise ConfigError(f"unknown system {kind!r}; choose from {', '.join(KNOWN_KINDS)}")
        if kind in ("original", "legacy", "prf"):
            if model:
                raise ConfigError(f"system {kind!r} takes no model")
            return cls(kind)
        model = model or default_model
        if not model:
            raise ConfigError(f"system {kind!r} needs a model: pass --model DIR or write {kind}:DIR")
        return cls(kind, model)


@dataclasses.dataclass
class RewriteOutcome:
    """What the rewriter produced for one query: rewrites with their tag probabilities, and the time it took."""

    rewrites: list[str]
    tag_probabilities: list[dict[str, float]]
    latency_ms: float


def produce_rewrites(model, queries: Sequence[str], num_rewrites: int, progress: bool = True) -> dict[str, RewriteOutcome]:
    """Run the model on every query one at a time (as serving does), timing generation plus tagging."""
    outcomes: dict[str, RewriteOutcome] = {}
    for query in tqdm(queries, desc=f"rewriting ({getattr(model, 'name', 'model')})", unit="q", disable=not progress):
        started = time.perf_counter()
        rewrites = model.generate([query], num_rewrites)[0]
        probabilities = model.tag([(query, rewrite) for rewrite in rewrites]) if rewrites else []
        outcomes[query] = RewriteOutcome(rewrites, probabilities, (time.perf_counter() - started) * 1000.0)
    return outcomes


def _search_all(client: OpenSearch, index: str, bodies: Mapping[str, dict], depth: int) -> dict[str, Ranking]:
    return search_many(client, index, bodies, depth=depth, batch_size=20)


def _increment(hits: Ranking, judged: Mapping[str, int]) -> int:
    """Relevant documents in the top 100 found only through rewrite clauses."""
    count = 0
    for doc in hits.ids[:100]:
        names = hits.matched.get(doc, [])
        if judged.get(doc, 0) >= RELEVANT_GRADE and names and not any(n.startswith(ORIGINAL_CLAUSE) for n in names):
            count += 1
    return count


def rewrite_relevance(client: OpenSearch, index: str, pairs: Sequence[tuple[str, str]], qrels: Qrels) -> float | None:
    """Share of (query, rewrite) pairs whose rewrite's own top 10 has a mean judged grade >= 2 for the query.

    Unjudged hits count as grade 0 (the conservative reading). None when there is no pair.
    """
    if not pairs:
        return None
    bodies = {f"{i}": DEFAULT_BASELINE.build(rewrite) for i, (_, rewrite) in enumerate(pairs)}
    hits = _search_all(client, index, bodies, depth=10)
    good = 0
    for i, (query, _) in enumerate(pairs):
        grades = [qrels[query].get(doc, 0) for doc in hits[f"{i}"].ids[:10]]
        if grades and sum(grades) / 10 >= RELEVANT_GRADE:
            good += 1
    return good / len(pairs)


def index_brands(client: OpenSearch, index: str, field: str | None, size: int = 5000) -> list[str]:
    """Brand names read from the index (a terms aggregation on ``field``); [] without a field."""
    if not field:
        return []
    from qrw.plugin.guards import brands_from_response

    body = {"size": 0, "aggs": {"brands": {"terms": {"field": field, "size": size}}}}
    return brands_from_response(client.search(index=index, body=body))


def adds_brand_or_number(query: str, rewrite: str, brands) -> bool:
    from qrw.plugin.guards import new_brand, new_number

    return bool(new_brand(query, rewrite, brands) or new_number(query, rewrite))


def system_report(per_query_rows: list[dict], baseline_ndcg: Mapping[str, float] | None) -> dict:
    """Means, harm/win rates and significance against ``original`` for one system."""
    report: dict = dict(mean_metrics(per_query_rows))
    if baseline_ndcg is not None:
        system = [row["ndcg@10"] for row in per_query_rows]
        baseline = [baseline_ndcg[row["query"]] for row in per_query_rows]
        report["harm_rate"] = harm_rate(system, baseline)
        report["win_rate"] = win_rate(system, baseline)
        report["p_value_vs_original"] = randomization_test(system, baseline)
        low, high = bootstrap_ci(system, baseline)
        report["ndcg@10_delta_ci95"] = [low, high]
        report["ndcg@10_ratio_vs_original"] = (
            report["ndcg@10"] / (sum(baseline) / len(baseline)) if sum(baseline) else None
        )
    return report


def format_comparison(result: Mapping) -> str:
    names = list(result["systems"])
    columns = ["ndcg@10", "ratio", "recall@100", "precision@10", "harm_rate", "win_rate", "increment",
               "rewrite_relevance_rate", "adds_brand_or_number_rate", "median_total_hits", "p50_ms", "p"]
    width = max(12, max(len(n) for n in names) + 2)
    lines = [f"{'system':<{width}}" + "".join(f"{c[:10]:>11}" for c in columns)]
    for name in names:
        s = result["systems"][name]
        values = [s.get("ndcg@10"), s.get("ndcg@10_ratio_vs_original")] + [s.get(c) for c in columns[2:-2]] + \
            [s["latency_ms"]["p50"], s.get("p_value_vs_original")]
        cells = "".join(f"{'-':>11}" if v is None else f"{v:>11.4f}" if isinstance(v, float) else f"{v:>11}" for v in values)
        lines.append(f"{name:<{width}}{cells}")
    return "\n".join(lines)


def check_index(client: OpenSearch, index: str, url: str) -> None:
    with translate_errors(url, index=index):
        if not client.indices.exists(index=index):
            raise client_missing_index(index, url)


def per_query_rows(hits_by_query: Mapping[str, Ranking], qrels: Qrels) -> list[dict]:
    rows = []
    for query, judged in qrels.items():
        hits = hits_by_query.get(query, Ranking([], [], {}, 0))
        row = {"query": query, **query_metrics(hits.ids, judged), "increment": _increment(hits, judged),
               "total_hits": hits.total}
        rows.append(row)
    return rows


def load_rewrite_model(path: str):
    """A rewrite table (``.jsonl``), an exported ONNX folder (has ``manifest.json``) through the torch-free runtime, else a PyTorch
    checkpoint folder through the trainer (used to compare training stages before export)."""
    folder = Path(path)
    if folder.is_file() and folder.suffix == ".jsonl":
        from qrw.plugin.table import TableRewriteModel

        return TableRewriteModel.from_file(folder)
    if (folder / "manifest.json").is_file():
        from qrw.plugin.runtime import load_model

        return load_model(folder)
    if (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file():
        from qrw.trainer.model import TorchRewriteModel

        return TorchRewriteModel(folder, strategy="greedy")
    raise ConfigError(f"model not found: {folder} is neither an exported model (manifest.json) nor a checkpoint")


def gated_rewrites(query: str, outcome: RewriteOutcome, plugin_config, brands) -> tuple[list, list[dict]]:
    """The plugin's serving policy on shared model output: guards first, then the gate.

    Returns the weighted rewrites (weight 0 = dropped) and, per rewrite, what happened and why.
    """
    from qrw.plugin.gate import decide
    from qrw.plugin.guards import check
    from qrw.plugin.merge import WeightedRewrite
    from qrw.plugin.widening import is_respelling, may_add_documents

    reasons = check(query, outcome.rewrites, plugin_config.guards, brands)
    weighted, decisions = [], []
    for rewrite, probabilities, reason in zip(outcome.rewrites, outcome.tag_probabilities, reasons):
        decision = decide(probabilities, plugin_config.gate, respelling=functools.partial(is_respelling, query, rewrite))
        weight = 0.0 if reason is not None else decision.weight
        weighted.append(WeightedRewrite(rewrite, weight, may_add_documents(query, rewrite, full=decision.action == "full")))
        decisions.append({"text": rewrite, "tag": decision.tag, "p_exact": round(float(probabilities.get("exact", 0.0)), 4),
                          "action": "drop" if reason is not None else decision.action, "weight": weight,
                          "reason": f"guard: {reason}" if reason is not None else decision.reason})
    return weighted, decisions


def recover_empty(client: OpenSearch, index: str, bodies: Mapping[str, dict], hits: dict[str, Ranking],
                  recovery, depth: int) -> list[str]:
    """The plugin's zero-hit recovery on the evaluation's search path: each query whose body found nothing is
    searched once more with the retry body the proxy and the client would send (``qrw.plugin.recovery``), and
    its ranking is replaced when the retry finds something. Returns the queries recovered."""
    from qrw.plugin.recovery import retry_body

    empty = {"hits": {"total": {"value": 0, "relation": "eq"}, "hits": []}}  # what such a search answered
    retries = {}
    for q, ranking in hits.items():
        retry = retry_body(bodies[q], empty, recovery) if ranking.total == 0 else None
        if retry is not None:
            retries[q] = retry
    recovered = []
    for q, ranking in (_search_all(client, index, retries, depth) if retries else {}).items():
        if ranking.total > 0:
            hits[q] = ranking
            recovered.append(q)
    return recovered


def index_respellings(client: OpenSearch, index: str, queries: Sequence[str], respell) -> dict:
    """The plugin's index respelling (``qrw.plugin.respell``) of each query, as the proxy and the clients ask for
    it: one suggest request per query (and, when a multi-shard answer proposes a correction, one request that
    checks index-wide whether a shard holds the typed word after all); queries the index spells as typed are
    left out."""
    from qrw.plugin.prompt import normalize_text
    from qrw.plugin.respell import held_body, held_words, respelled, suggest_body, words_to_confirm

    from opensearchpy.exceptions import RequestError

    found = {}
    for q in queries:
        text = normalize_text(q)
        try:
            answer = client.search(index=index, body=suggest_body(text, respell))
        except RequestError as exc:  # e.g. no such field: the plugin turns respelling off for this index too
            log.warning("index respelling skipped: %s refused the suggest request on %s (%s)", index, respell.field,
                        getattr(exc, "error", exc))
            return {}
        slips = {"vowel_slips": respell.vowel_slips, "sound_slips": respell.sound_slips}
        words = words_to_confirm(text, answer, **slips)  # a multi-shard answer's corrections, confirmed index-wide
        held = held_words(client.search(index=index, body=held_body(words, respell)), words) if words else frozenset()
        if held is None:
            continue  # unconfirmed, as the plugin treats it: no respelling
        respelling = respelled(text, answer, **slips, held=held, join_min_docs=respell.join_min_docs)
        if respelling is not None:
            found[q] = respelling
    return found


def compare_systems(
    client: OpenSearch,
    index: str,
    qrels: Qrels,
    specs: Sequence[SystemSpec],
    *,
    plugin_config=None,
    num_rewrites: int = 4,
    depth: int = 100,
    url: str = "",
    progress: bool = True,
    brand_field: str | None = "supplier.raw",
    baseline=None,
) -> dict:
    """Run every system on the same index and judgments; the JSON shape documented in the README.

    ``plugin_config``: the serving configuration for ``gated``: a ``PluginConfig`` used as it is, or
    the path of a plugin YAML layered over each model's shipped ``serving.yaml`` as serving layers
    it (keys override); None: each model's shipped ``serving.yaml``, else the defaults. ``brand_field``: the index field whose terms are the brands
    for the guards and for the added-brand rate. ``baseline``: the ``BaselineSpec`` of ``original``.
    """
    from qrw.eval.prf import PrfQueryBuilder
    from qrw.plugin.config import load_config
    from qrw.plugin import model_store
    from qrw.plugin.engine import apply_decoding
    from qrw.plugin.guards import load_brands
    from qrw.plugin.merge import WeightedRewrite, merge_rewrites
    from qrw.plugin.respell import with_respelling
    from qrw.search.baseline import VARIANTS

    check_index(client, index, url)
    queries = list(qrels)
    baseline = baseline or DEFAULT_BASELINE
    with translate_errors(url, index=index):
        catalog_brands = index_brands(client, index, brand_field)
    outcomes_by_model: dict[str, dict[str, RewriteOutcome]] = {}  # per model, per text the model rewrote
    models: dict[str, object] = {}
    respellings_by_setting: dict[str, dict] = {}  # per respell setting: ungated and gated share one set of asks
    systems: dict[str, dict] = {}
    baseline_ndcg: dict[str, float] | None = None
    ordered = sorted(specs, key=lambda spec: spec.kind != "original")  # original first: the reference
    if not any(spec.kind == "original" for spec in ordered):
        ordered.insert(0, SystemSpec("original"))
    for spec in ordered:
        latencies: list[float] = []
        respellings: dict = {}
        relevance = adds_rate = None
        served = 0
        decisions_by_query: dict[str, list[dict]] = {}
        model_rewrites: dict[str, list[str]] = {}
        with translate_errors(url, index=index):
            if spec.kind == "original":
                bodies = {q: baseline.build(q) for q in queries}
            elif spec.kind == "legacy":
                bodies = {q: VARIANTS["legacy_best_fields"].build(q) for q in queries}
            elif spec.kind == "prf":
                prf = PrfQueryBuilder(client, index, baseline=baseline)
                bodies = {}
                for q in queries:
                    started = time.perf_counter()
                    bodies[q] = prf.build(q)
                    latencies.append((time.perf_counter() - started) * 1000.0)
            else:
                if plugin_config is None or isinstance(plugin_config, (str, Path)):
                    config = load_config(plugin_config, shipped=model_store.shipped_serving(spec.model))
                else:
                    config = plugin_config
                brands = load_brands(config.guards, catalog_brands)
                if config.respell.enabled:
                    setting = config.respell.model_dump_json()
                    if setting not in respellings_by_setting:
                        respellings_by_setting[setting] = index_respellings(client, index, queries, config.respell)
                    respellings = respellings_by_setting[setting]
                else:
                    respellings = {}
                # as the engine does: the model rewrites the index's respelling of a query when there is one
                model_text = {q: respellings[q].text if q in respellings and config.respell.rewrite_respelled else q
                              for q in queries}
                if spec.model not in models:
                    models[spec.model] = load_rewrite_model(spec.model)
                    apply_decoding(models[spec.model], config.chain.decoding, config.chain.propose)  # as the engine does
                outcomes = outcomes_by_model.setdefault(spec.model, {})
                missing = [t for t in dict.fromkeys(model_text.values()) if t not in outcomes]
                if missing:
                    outcomes.update(produce_rewrites(models[spec.model], missing, num_rewrites, progress))
                latencies = [outcomes[model_text[q]].latency_ms for q in queries]
                bodies, pairs = {}, []
                for q in queries:
                    rewritten_text = model_text[q]
                    model_rewrites[q] = outcomes[rewritten_text].rewrites
                    if spec.kind == "ungated":
                        weighted = [WeightedRewrite(r, config.gate.full_weight) for r in outcomes[rewritten_text].rewrites]
                        decisions_by_query[q] = [{"text": r, "action": "full", "weight": config.gate.full_weight}
                                                 for r in outcomes[rewritten_text].rewrites]
                    else:
                        weighted, decisions_by_query[q] = gated_rewrites(rewritten_text, outcomes[rewritten_text], config, brands)
                    if q in respellings:  # not the gate's to decide: served alike by both
                        weighted = with_respelling(weighted, respellings[q], config.respell.weight)
                        decisions_by_query[q].append({"text": respellings[q].text, "action": "respelling",
                                                      "weight": config.respell.weight,
                                                      "reason": "index term suggester: " + ", ".join(
                                                          f"{a} -> {b}" for a, b in respellings[q].words)})
                    pairs += [(q, rw.text) for rw in weighted if rw.weight > 0]
                    bodies[q] = merge_rewrites(baseline.build(q), weighted, config.merge.rewrite_operator, config.merge.mode)
                served = len(pairs)
                relevance = rewrite_relevance(client, index, pairs, qrels)
                if pairs:
                    adds_rate = sum(adds_brand_or_number(q, r, brands) for q, r in pairs) / len(pairs)
            hits = _search_all(client, index, bodies, depth)
            recovered = (recover_empty(client, index, bodies, hits, config.recovery, depth)
                         if spec.kind in ("ungated", "gated") else [])
        rows = per_query_rows(hits, qrels)
        report = system_report(rows, baseline_ndcg if spec.kind != "original" else None)
        if spec.kind == "original":
            baseline_ndcg = {row["query"]: row["ndcg@10"] for row in rows}
            report.update({"harm_rate": 0.0, "win_rate": 0.0})
        report["increment"] = sum(row["increment"] for row in rows)
        report["median_total_hits"] = float(statistics.median(row["total_hits"] for row in rows)) if rows else None
        report["rewrite_relevance_rate"] = relevance
        report["served_rewrites"] = served
        report["zero_hit_recoveries"] = len(recovered)
        report["index_respellings"] = len(respellings) if spec.kind in ("ungated", "gated") else 0
        report["adds_brand_or_number_rate"] = adds_rate
        report["latency_ms"] = {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)}
        report["latency_samples_ms"] = latencies
        if spec.kind in ("ungated", "gated"):
            for row in rows:
                row["rewrites"] = model_rewrites[row["query"]]
                row["decisions"] = decisions_by_query[row["query"]]
                row["recovered"] = row["query"] in recovered
        report["per_query"] = rows
        systems[spec.name] = report
    return {"queries": len(queries), "index": index, "baseline": baseline.model_dump(), "systems": systems}
