"""The rewriting engine: one object, built at start, that both drop-ins (client and proxy) call.

It owns the chain (model -> guards -> gate -> rules), the cache and the model pool, and turns a
search body into the rewritten body plus an explain report. It never raises for a rewriting problem:
whatever goes wrong, the caller gets a body to send (at worst the original, minus ``ext.qrw``).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qrw.plugin.cache import FileStore, PersistentCache, RedisStore, RewriteStore, StoreError, TTLCache
from qrw.plugin.chain import Candidate, Chain, ChainResult, Explain, GateFactory, GuardsFactory, ModelRewriterFactory, ModelSource, RewriteCache, RulesFactory, cache_key
from qrw.plugin.config import CacheConfig, PluginConfig
from qrw.plugin.fidelity import TermsFactory, faithful_merge
from qrw.plugin.merge import WeightedRewrite, find_text_query, rewrite_name, strip_ext
from qrw.plugin.model import RewriteModel
from qrw.plugin.msearch import target_index
from qrw.plugin.prompt import normalize_text
from qrw.plugin.respell import (
    Respelling,
    held_body,
    held_words,
    respelled,
    suggest_body,
    with_respelling,
    words_to_confirm,
    worth_asking,
)
from qrw.plugin.rules import RuleSet
from qrw.plugin.widening import may_add_documents

log = logging.getLogger("qrw.plugin")
BRANDS_RETRY_S = 60.0
"""After a failed brand request, a drop-in client asks again at most this often (``RewriteEngine.brands_ask``)."""
BRANDS_TIMEOUT_S = 2.0
"""The longest a drop-in client's first search waits for the brand request."""

TRUE_STRINGS = ("1", "true", "yes", "on")
VERDICT_MEMO_SIZE = 50_000
RESPELL_MEMO_MIN = 1024
NO_RESPELLING = "none"
"""What the respelling memo holds for a query the index spells as the user did (asked, nothing to fix)."""


def _respell_key(text: str, index: str | None) -> str:
    return f"{index or ''}\x00{text}"


@dataclasses.dataclass(frozen=True)
class RespellAsk:
    """A suggest request to send for one query (``RewriteEngine.respell_ask``), and where its answer is kept."""

    text: str
    body: dict
    index: str | None


def weighted(query: str, candidate: Candidate) -> WeightedRewrite:
    """A kept candidate as the merge takes it, marked with whether it may add documents under the
    ``confident`` merge mode (``plugin/widening.py``)."""
    expands = may_add_documents(query, candidate.text, full=candidate.decision.action == "full", from_rule=candidate.source == "rule")
    return WeightedRewrite(candidate.text, candidate.decision.weight, expands)


def _error_reason(response: Any) -> str:
    """The reason of an OpenSearch error body (its root cause first), for a log line."""
    error = response.get("error") if isinstance(response, Mapping) else None
    if isinstance(error, Mapping):
        causes = error.get("root_cause")
        if isinstance(causes, list) and causes and isinstance(causes[0], Mapping):
            return str(causes[0].get("reason", error.get("reason", "")))[:300]
        return str(error.get("reason", ""))[:300]
    return str(error or "no reason given")[:300]


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in TRUE_STRINGS
    return bool(value)


def load_model(model: str | Path | None = "default", *, strict: bool = False) -> RewriteModel | None:
    """The rewrite model named by ``model``, through one path (``qrw.plugin.model_store.resolve``):

    ``"default"`` (the default: the project's default rewriter), an exported ONNX folder, an adapter
    or checkpoint folder (exported on first use, cached by content hash), or a ``.jsonl`` rewrite
    table (``TableRewriteModel``). ``None`` means no model.

    On any problem it logs a warning naming the model and returns None, which means "serve the
    original query": a missing folder, a broken export or a runtime that cannot be imported must
    never stop the proxy from answering searches. ``strict=True`` raises instead (library use,
    where a typo should fail loudly).
    """
    if model is None:
        return None
    from qrw.errors import QrwError
    from qrw.plugin import model_store

    try:
        path = model_store.resolve(model)
    except QrwError as exc:
        if strict:
            raise
        log.warning("no usable model for %r (%s): serving original queries (no rewrites)", str(model), exc)
        return None
    if model_store.is_table(path):
        from qrw.plugin.table import TableRewriteModel

        try:
            return TableRewriteModel.from_file(path)
        except Exception as exc:  # noqa: BLE001
            if strict:
                raise
            log.warning("cannot read the rewrite table %s (%s): serving original queries (no rewrites)", path, exc)
            return None
    try:
        from qrw.plugin import runtime  # noqa: PLC0415 - lazy: onnxruntime is heavy and optional

        return runtime.load_model(path, verify_hash=True)  # a corrupt model file of the right size must not load
    except Exception as exc:  # noqa: BLE001
        if strict:
            raise
        log.warning("cannot load the model from %s (%s: %s): serving original queries (no rewrites)", path, type(exc).__name__, exc)
    return None


WARM_UP_QUERY = "usb c cable 2m"
"""Run through the serving path at start; not cached."""


def model_hash(model: RewriteModel | None) -> str:
    """The model's content hash (exported ONNX folders have one), or "" when it has none."""
    value = getattr(model, "model_hash", "") if model is not None else ""
    return value if isinstance(value, str) else ""


def open_store(config: CacheConfig) -> RewriteStore | None:
    """The persistent store the config names; None for ``store: memory``. Raises ``StoreError``."""
    if config.store == "memory" or config.max_entries <= 0:
        return None
    if config.store == "redis":
        store = RedisStore(config.redis_url or "", timeout_s=config.redis_timeout_s)
        store.ping()
        return store
    return FileStore(config.store_file())


def build_cache(config: PluginConfig, model: RewriteModel | None) -> TTLCache | PersistentCache:
    """The in-memory cache, with the persistent store in front of the model when the model has a hash.

    A store that cannot be opened (a read-only folder, an unreachable Redis) is logged and left out:
    the proxy then serves from memory, as before, instead of failing to start.
    """
    cache = config.cache
    memory: TTLCache = TTLCache(cache.max_entries, cache.ttl_s)
    digest = model_hash(model)
    if not digest or cache.store == "memory" or cache.max_entries <= 0:
        return memory
    try:
        store = open_store(cache)
    except StoreError as exc:
        log.warning("%s; caching in memory only", exc)
        return memory
    namespace = f"{cache.key_prefix}:{digest}:n{config.chain.num_rewrites}{':p' if config.chain.propose else ''}"
    log.info("rewrite cache: %s (namespace %s)", store.description if store else "memory", namespace)
    return PersistentCache(memory, store, namespace, persist_ttl_s=cache.persist_ttl_s)


def apply_decoding(model: RewriteModel | None, decoding: str, propose: bool = False) -> None:
    """Set the ONNX runtime's decoding strategy and ``propose`` from the config (other models decode
    their own way)."""
    generation = getattr(model, "generation", None)
    if generation is None or not dataclasses.is_dataclass(generation):
        return
    wanted = {"strategy": decoding, **({"propose": propose} if hasattr(generation, "propose") else {})}
    if any(getattr(generation, key, value) != value for key, value in wanted.items()):
        model.generation = dataclasses.replace(generation, **wanted)


class RewriteEngine:
    def __init__(self, config: PluginConfig | None = None, model: RewriteModel | None = None, rules: RuleSet | None = None,
                 cache: RewriteCache | None = None) -> None:
        self.config = config or PluginConfig()
        apply_decoding(model, self.config.chain.decoding, self.config.chain.propose)
        # Any ``RewriteCache`` plugs in here; by default the in-process LRU, with the persistent store
        # (``cache.store``) behind it for models with a hash (see ``build_cache``).
        self.cache: RewriteCache = cache if cache is not None else build_cache(self.config, model)
        self.source = ModelSource(model, self.config.chain, self.cache)
        self._verdicts: dict[str, tuple[Any, list[WeightedRewrite]]] = {}
        self.rules = rules or RuleSet()
        self.chain = Chain([
            ModelRewriterFactory(self.source),
            GuardsFactory(self.config.guards),
            GateFactory(self.config.gate),
            RulesFactory(self.rules),
            TermsFactory(),
        ])
        # Index respellings (qrw.plugin.respell) per (index, query text): asked once, then reused until the cache TTL.
        self._respellings: TTLCache[Any] = TTLCache(max(self.config.cache.max_entries, RESPELL_MEMO_MIN), self.config.cache.ttl_s)
        # Indices that refused a suggest request (400: e.g. no such field), not asked again until the cache TTL.
        self._respell_refused: TTLCache[str] = TTLCache(RESPELL_MEMO_MIN, self.config.cache.ttl_s)
        # The brand guard's vocabulary from the index (guards.brands_field): not read yet, and when it was last asked.
        self._brands_read = self.config.guards.brands_field is None
        self._brands_asked_at: float | None = None
        self.warm_ms: float | None = None
        if self.config.chain.warm_up:
            self.warm_up()
        if self.config.cache.precompute_file is not None:
            self.precompute_file(self.config.cache.precompute_file)

    # -- lifecycle ---------------------------------------------------------------------------

    def warm_up(self) -> float | None:
        """Run the model through the serving path once before traffic; idempotent.

        Why: the first call of an ONNX session pays kernel selection and memory-arena growth; a request
        that met them missed its deadline. Only models that know how to warm up (``warmup()``: the
        ONNX runtime) are run; tables and test doubles are left alone. The probe goes through
        ``ModelSource.compute`` (the exact serving call) and is not cached. Returns the milliseconds it
        took (None: nothing to do).
        """
        model = self.source.model
        if self.warm_ms is not None or model is None or not callable(getattr(model, "warmup", None)):
            return self.warm_ms
        started = time.perf_counter()
        if not getattr(model, "warmed", False):
            model.warmup()
        try:
            self.source.compute(WARM_UP_QUERY)
        except Exception as exc:  # noqa: BLE001 - a failing model is the fallback ladder's business, not start-up's
            log.warning("warm-up call failed: %s: %s", type(exc).__name__, exc)
        self.warm_ms = (time.perf_counter() - started) * 1000.0
        log.info("model %s warmed in %.0f ms", self.model_name, self.warm_ms)
        return self.warm_ms

    def precompute(self, queries: Sequence[str], *, batch_size: int = 16, refresh: bool = False, progress: bool = False) -> dict:
        """Compute and cache the outputs of ``queries`` (the persistent store keeps them); returns counts.

        Queries already fresh in the cache are skipped unless ``refresh``.
        """
        from tqdm import tqdm

        by_key: dict[str, str] = {}
        for query in queries:
            text = normalize_text(query)
            if text:
                by_key.setdefault(cache_key(text), text)  # "Laptop" and "laptop" are one entry
        unique = list(by_key.values())
        todo = unique if refresh else [q for q in unique if not self.source.is_fresh(q)]
        counts = {"queries": len(unique), "cached_before": len(unique) - len(todo), "computed": 0, "failed": 0}
        if self.source.model is None:
            counts["failed"] = len(todo)
            return counts
        with tqdm(total=len(todo), desc="precompute", unit="q", disable=not progress) as bar:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                try:
                    outputs = self.source.compute_batch(batch)
                except Exception as exc:  # noqa: BLE001 - one bad batch must not lose the rest
                    log.warning("precompute failed for a batch of %d (%s: %s)", len(batch), type(exc).__name__, exc)
                    counts["failed"] += len(batch)
                else:
                    for query, output in zip(batch, outputs):
                        self.cache.put(cache_key(query), output)
                    counts["computed"] += len(batch)
                bar.update(len(batch))
        return counts

    def precompute_file(self, path: str | Path) -> int:
        path = Path(path)
        if not path.is_file():
            log.warning("precompute file %s not found; skipped", path)
            return 0
        queries = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        counts = self.precompute(queries)
        log.info("precompute: %s", counts)
        return counts["computed"] + counts["cached_before"]

    def close(self) -> None:
        self.source.close()
        closer = getattr(self.cache, "close", None)
        if callable(closer):
            closer()

    def brands_request(self) -> dict | None:
        """The search body that reads brands from the index (``guards.brands_field``), or None."""
        from qrw.plugin.guards import brands_aggregation

        return brands_aggregation(self.config.guards)

    @property
    def brands_read(self) -> bool:
        """Whether the brand guard has its brands from the index (or needs none: no ``guards.brands_field``)."""
        return self._brands_read

    def brands_ask(self, now: float | None = None) -> dict | None:
        """The brand request a client should send before its next search, or None: sent until one answer is read
        (``add_brands_from``), and after a failure again at most every ``BRANDS_RETRY_S``.

        Why: the brand guard needs the index's brands (``guards.brands_field``). The proxy reads them at start,
        and through this again when that failed (it started before OpenSearch); the drop-in clients have no
        start, so they read them before their first search. Without this a ``RewritingOpenSearch`` served
        rewrites that add a brand, which the proxy drops."""
        if self._brands_read:
            return None
        now = time.monotonic() if now is None else now
        if self._brands_asked_at is not None and now - self._brands_asked_at < BRANDS_RETRY_S:
            return None
        self._brands_asked_at = now
        return self.brands_request()

    def add_brands_from(self, response: Mapping) -> int:
        """Add the brands of a ``brands_request`` response to the guards' vocabulary; return how many are known.
        An answer without the aggregation (an error) adds nothing and leaves the brands to be asked again."""
        from qrw.plugin.guards import brands_from_response, load_brands

        guards_step = next(f for f in self.chain.factories if isinstance(f, GuardsFactory))
        if not isinstance(response, Mapping) or not isinstance(response.get("aggregations"), Mapping):
            return len(guards_step.brands)
        self._brands_read = True
        guards_step.brands = load_brands(self.config.guards, [*guards_step.brands, *brands_from_response(dict(response))])
        self._verdicts.clear()  # remembered chain verdicts were made with the old vocabulary
        return len(guards_step.brands)

    @property
    def model_name(self) -> str:
        return self.source.name

    # -- decisions ---------------------------------------------------------------------------

    def enabled_for(self, index: str | None) -> bool:
        """Whether searches on ``index`` (comma-separated names, or None for all) are rewritten."""
        names = [n.strip() for n in (index or "").split(",") if n.strip()] or ["_all"]
        patterns = self.config.proxy.rewrite_indices
        return all(
            ("*" in patterns or "_all" in patterns) if n in ("_all", "*") else any(fnmatch.fnmatchcase(n, p) for p in patterns)
            for n in names
        )

    def rewritable_text(self, body: Any) -> str | None:
        if not isinstance(body, Mapping):
            return None
        found = find_text_query(body)
        if found is None:
            return None
        text = normalize_text(found.text)
        if not text or len(text) > self.config.chain.max_query_chars:
            return None
        return text

    def needs_model(self, body: Any, index: str | None = None) -> bool:
        """True when rewriting ``body`` (searched on ``index``) may wait for the model (no fresh cache entry): run
        it off the event loop."""
        text = self.rewritable_text(body)
        return text is not None and self.source.model is not None and not self.source.is_fresh(self.model_text(text, index))

    def model_text(self, text: str, index: str | None) -> str:
        """The text the model rewrites for the user's ``text``: the index's respelling of it when there is one.
        The user meant the respelled words; the model's rewrites of a misspelled text (``boogs`` -> ``boots``),
        and the tagger's verdicts on them, are what the training data least resembles (docs/eval/headroom.md §17d)."""
        if not self.config.respell.rewrite_respelled:
            return text
        return self._read_text(text, self.respelling(text, index))

    def _read_text(self, text: str, respelling: Respelling | None) -> str:
        """``model_text`` once the respelling is known (the request path has it already)."""
        return respelling.text if respelling is not None and self.config.respell.rewrite_respelled else text

    # -- rewriting ---------------------------------------------------------------------------

    def rewrite_query(self, query: str, *, explain: bool = False, deadline_ms: float | None = None) -> ChainResult:
        budget = (deadline_ms if deadline_ms is not None else self.config.chain.deadline_ms) / 1000.0
        level = self.config.chain.explain_level if explain else "off"
        return self.chain.run(query, time.monotonic() + budget, Explain(level))

    def _kept_rewrites(self, text: str, deadline_ms: float | None) -> list[WeightedRewrite]:
        """The rewrites to merge for ``text`` (no explain). On a fresh cache hit the chain's verdict for
        the same model outputs is reused: guards, gate and rules are pure functions of (query, outputs)
        and would otherwise cost most of the proxy's CPU on the cache-hit path."""
        budget = (deadline_ms if deadline_ms is not None else self.config.chain.deadline_ms) / 1000.0
        deadline = time.monotonic() + budget
        outputs, origin, error = self.source.outputs(text, deadline)
        if origin == "cache":
            remembered = self._verdicts.get(text)
            if remembered is not None and (remembered[0] is outputs or remembered[0] == outputs):
                return remembered[1]
        result = self.chain.run(text, deadline, Explain("off"), prefetched=(outputs, origin, error))
        kept = [weighted(text, c) for c in result.kept]
        if origin in ("cache", "model"):
            if len(self._verdicts) >= VERDICT_MEMO_SIZE:
                self._verdicts.clear()
            self._verdicts[text] = (outputs, kept)
        return kept

    def verdict(self, text: str) -> tuple[Any, list[WeightedRewrite]] | None:
        """The (model outputs, kept rewrites) remembered for ``text``, or None; a token for ``verdict_is_current``."""
        return self._verdicts.get(text)

    def verdict_is_current(self, text: str, token: object, *, count: bool = True, key: str | None = None) -> bool:
        """Whether ``token`` (from ``verdict``) still gives ``text``'s rewrites: the cache entry is fresh and holds
        the outputs the verdict was made from. With ``count``, a cache hit in the stats and metrics, like the
        chain's own lookup. ``key``: ``cache_key(text)`` when the caller kept it (normalising costs more than
        the rest of this check)."""
        remembered = self._verdicts.get(text)
        if remembered is not token or remembered is None:
            return False
        if key is None:
            key = cache_key(text)
        if count:
            fresh_hit = getattr(self.cache, "fresh_hit", None)  # one lookup where the cache offers it
            if fresh_hit is not None:
                value = fresh_hit(key)
            elif self.cache.is_fresh(key):
                hit = self.cache.get(key)
                value = hit.value if hit is not None and hit.fresh else None
            else:
                value = None
        else:
            value = self.cache.peek(key)
        if value is None or not (remembered[0] is value or remembered[0] == value):
            return False
        if count:
            self.source.count_cache_hit()
        return True

    # -- index respelling (qrw.plugin.respell) -----------------------------------------------

    def respell_ask(self, body: Any, index: str | None) -> RespellAsk | None:
        """The suggest request the caller should send to ``index`` before rewriting ``body``, or None: respelling
        is off, rewriting is off for the index, there is no text query, or a fresh answer is remembered."""
        config = self.config.respell
        if not config.enabled or not isinstance(body, Mapping) or not self.enabled_for(index):
            return None
        text = self.rewritable_text(body)
        if text is None or not worth_asking(text, config):
            return None
        if self._respellings.is_fresh(_respell_key(text, index)) or self._respell_refused.is_fresh(index or ""):
            return None
        return RespellAsk(text, suggest_body(text, config), index)

    def respell_check(self, ask: RespellAsk, response: Any) -> RespellAsk | None:
        """The follow-up request to send before ``respell_answer`` when the answer to ``ask`` came from several
        shards and proposes a correction (``respell.words_to_confirm``): it counts, index-wide, the documents
        holding each typed word. None when no check is needed."""
        if not isinstance(response, Mapping) or "error" in response:
            return None
        config = self.config.respell
        words = words_to_confirm(ask.text, response, vowel_slips=config.vowel_slips, sound_slips=config.sound_slips)
        return RespellAsk(ask.text, held_body(words, config), ask.index) if words else None

    def respell_answer(self, ask: RespellAsk, response: Any, *, refused: bool = False, held: Any = None) -> Respelling | None:
        """Remember the index's answer to ``ask`` (``response``: the parsed search response; None when the request
        failed or timed out, which is not remembered, so the next request asks again). ``refused``: the index
        answered 400 (typically: it has no ``respell.field``); it is then not asked again until the cache TTL.
        ``held``: the answer to ``respell_check``'s request when it gave one (None when that failed: the
        corrections stay unconfirmed, nothing is remembered and the next request asks again)."""
        if refused:
            if not self._respell_refused.is_fresh(ask.index or ""):
                reason = _error_reason(response)
                log.warning("index respelling is off for %s until the cache TTL: the index refused the suggest request "
                            "(%s); set respell.field to an unstemmed text field of that index, or respell.enabled: false",
                            ask.index or "all indices", reason)
            self._respell_refused.put(ask.index or "", "refused")
            return None
        if response is None or not isinstance(response, Mapping) or "error" in response:
            return None
        config = self.config.respell
        words = words_to_confirm(ask.text, response, vowel_slips=config.vowel_slips, sound_slips=config.sound_slips)
        known = held_words(held, words) if words else frozenset()
        if known is None:
            return None
        found = respelled(ask.text, response, vowel_slips=config.vowel_slips, sound_slips=config.sound_slips, held=known,
                          join_min_docs=config.join_min_docs)
        self._respellings.put(_respell_key(ask.text, ask.index), found if found is not None else NO_RESPELLING)
        return found

    def respelling(self, text: str, index: str | None) -> Respelling | None:
        """The remembered respelling of ``text`` on ``index`` (a stale one too: better than none), or None."""
        if not self.config.respell.enabled:
            return None
        hit = self._respellings.get(_respell_key(text, index))
        return hit.value if hit is not None and isinstance(hit.value, Respelling) else None

    def rewrite_body(self, body: Any, *, index: str | None = None, explain: bool = False) -> tuple[Any, dict | None]:
        """(body to send, explain report or None). Never raises for a rewriting problem."""
        started = time.perf_counter()
        if not isinstance(body, Mapping):
            return body, ({"rewritten": False, "reason": "no JSON object body"} if explain else None)
        try:
            body, options = strip_ext(body)
            explain = explain or truthy(options.get("explain", False))
            if not self.enabled_for(index):
                return body, self._report(None, started, "rewriting is not enabled for this index") if explain else None
            text = self.rewritable_text(body)
            if text is None:
                reason = "no text query, an empty one, or one longer than max_query_chars"
                return body, self._report(None, started, reason) if explain else None
            deadline_ms = options.get("deadline_ms")
            deadline_ms = float(deadline_ms) if isinstance(deadline_ms, (int, float)) and 0 < deadline_ms <= 60_000 else None
            respelling = self.respelling(text, index)
            model_text = self._read_text(text, respelling)
            weight = self.config.respell.weight
            if not explain:
                kept = with_respelling(self._kept_rewrites(model_text, deadline_ms), respelling, weight)
                return faithful_merge(body, kept, self.config.merge.rewrite_operator, self.config.merge.mode), None
            result = self.rewrite_query(model_text, explain=explain, deadline_ms=deadline_ms)
            kept = with_respelling([weighted(model_text, c) for c in result.kept], respelling, weight)
            new_body = faithful_merge(body, kept, self.config.merge.rewrite_operator, self.config.merge.mode)
            report = self._report(result, started)
            if respelling is not None:
                words = respelling.text.casefold().split()
                position = next(i for i, k in enumerate(kept) if k.text.casefold().split() == words)
                report["respelling"] = {**respelling.as_dict(weight), "name": rewrite_name(position)}
                report["rewritten"] = True
                for row in report["rewrites"]:  # the model proposed the same words: say what is actually served
                    if row.get("name") == rewrite_name(position):
                        row["weight"] = kept[position].weight
                        row["served_as"] = "index respelling"

            return new_body, report
        except Exception as exc:  # noqa: BLE001 - the rewriter never causes an error response
            log.exception("rewriting failed; sending the original query")
            fallback = strip_ext(body)[0] if isinstance(body, Mapping) else body
            return fallback, ({"rewritten": False, "error": f"{type(exc).__name__}: {exc}"} if explain else None)

    def _report(self, result: ChainResult | None, started: float, reason: str | None = None) -> dict:
        total = (time.perf_counter() - started) * 1000.0
        if result is None:
            return {"rewritten": False, "reason": reason, "timings_ms": {"total": round(total, 3)}}
        kept_index = {id(c): i for i, c in enumerate(result.kept)}
        rewrites = []
        for candidate in result.candidates:
            row = candidate.as_dict()
            if id(candidate) in kept_index:
                row["name"] = rewrite_name(kept_index[id(candidate)])
            rewrites.append(row)
        context = result.context
        return {
            "rewritten": bool(result.kept),
            "query": result.query,
            "model": {"name": self.model_name, "origin": context.model_origin, "error": context.model_error},
            "rewrites": rewrites,
            "log": context.explain.as_dict(),
            "timings_ms": {"model": round(context.model_ms, 3), "chain": round(result.ms, 3), "total": round(total, 3)},
        }

    def rewrite_msearch(self, pairs: Sequence[tuple[dict, Any]], *, index: str | None = None, explain: bool = False) -> tuple[list[tuple[dict, Any]], list[dict | None]]:
        """Rewrite each (header, body) pair of an msearch; the header's index overrides ``index``."""
        out, reports = [], []
        for header, body in pairs:
            target = target_index(header, index) if isinstance(header, Mapping) else index
            new_body, report = self.rewrite_body(body, index=target, explain=explain)
            out.append((header, new_body))
            reports.append(report)
        return out, reports
