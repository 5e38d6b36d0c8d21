"""The rewriter chain: model rewriter -> guards -> gate -> rule overrides, with a nested explain log.

Shape (Querqy's): each step is a *factory* built once at start (it parses its configuration there and
holds only read-only state) that makes, per request, a *rewriter* holding only that request's state.
A rewriter takes the candidate list and returns a new one; the ``Chain`` checks that step ids are
unique and folds the candidates through the steps, timing each into the explain log.

The model step owns the latency budget and the fallback ladder (``ModelSource``):

1. a fresh cache entry for the query;
2. else the model, within what is left of the request's deadline (the call runs on a bounded pool of
   worker threads; identical queries in flight share one call; a call that finishes after its
   deadline still fills the cache for the next request);
3. else (timeout, exception, overload, no model) the stale cache entry, if any;
4. else no model rewrites: the original query goes out unchanged. No step ever raises to the caller.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, Protocol

from qrw.plugin import gate as gate_policy
from qrw.plugin import guards
from qrw.plugin.cache import TTLCache
from qrw.plugin.config import ChainConfig, GateConfig, GuardConfig
from qrw.plugin.errors import ModelBusy, ModelError, ModelTimeout
from qrw.plugin.gate import Decision
from qrw.plugin.model import RewriteModel
from qrw.plugin.prompt import TAG_BY_NAME, normalize_text
from qrw.plugin.rules import RuleSet

log = logging.getLogger("qrw.plugin")

ExplainLevel = Literal["off", "ids", "details"]


# ---------------------------------------------------------------------------------------------
# Explain log: chain -> step -> action; when off, nothing is built
# ---------------------------------------------------------------------------------------------


class StepLog:
    def __init__(self, step_id: str, level: ExplainLevel) -> None:
        self.id = step_id
        self.level = level
        self.actions: list[dict] = []
        self.ms = 0.0

    def action(self, kind: str, text: str | None = None, **details: Any) -> None:
        if self.level == "off":
            return
        entry: dict[str, Any] = {"action": kind}
        if text is not None:
            entry["text"] = text
        if self.level == "details":
            entry.update(details)
        self.actions.append(entry)

    def as_dict(self) -> dict:
        return {"id": self.id, "ms": round(self.ms, 3), "actions": self.actions}


class Explain:
    """The nested explain log of one request."""

    def __init__(self, level: ExplainLevel = "off") -> None:
        self.level = level
        self.steps: list[StepLog] = []

    @property
    def on(self) -> bool:
        return self.level != "off"

    @contextmanager
    def step(self, step_id: str) -> Iterator[StepLog]:
        step = StepLog(step_id, self.level)
        started = time.perf_counter()
        try:
            yield step
        finally:
            step.ms = (time.perf_counter() - started) * 1000.0
            if self.on:
                self.steps.append(step)

    def as_dict(self) -> dict:
        return {"level": self.level, "chain": [step.as_dict() for step in self.steps]}


# ---------------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One rewrite travelling through the chain."""

    text: str
    source: str
    """``model`` (and where the model output came from: ``model``, ``cache``, ``stale``) or ``rule``."""
    probabilities: dict[str, float] | None = None
    decision: Decision | None = None
    dropped_by: str | None = None
    """Step id that dropped it (kept in the list for the explain output), or None."""
    rule: str | None = None

    @property
    def kept(self) -> bool:
        return self.dropped_by is None and self.decision is not None and self.decision.kept

    def as_dict(self) -> dict:
        out: dict[str, Any] = {"text": self.text, "source": self.source}
        if self.probabilities is not None:
            out["probabilities"] = {k: round(v, 4) for k, v in self.probabilities.items()}
        if self.decision is not None:
            out.update(tag=self.decision.tag, probability=round(self.decision.probability, 4),
                       action=self.decision.action, weight=self.decision.weight, reason=self.decision.reason)
        if self.dropped_by is not None:
            out.update(action="drop", weight=0.0, dropped_by=self.dropped_by)
        if self.rule is not None:
            out["rule"] = self.rule
        return out


@dataclasses.dataclass
class RequestContext:
    """What a rewriter may know about the request: the query text, the deadline, the log."""

    query: str
    deadline: float
    """``time.monotonic()`` value by which the model must have answered."""
    explain: Explain
    model_origin: str = "none"
    model_error: str | None = None
    model_ms: float = 0.0


class Rewriter(Protocol):
    def rewrite(self, candidates: list[Candidate], step: StepLog) -> list[Candidate]: ...


class RewriterFactory(Protocol):
    id: str

    def create(self, context: RequestContext) -> Rewriter: ...


# ---------------------------------------------------------------------------------------------
# The model step and its fallback ladder
# ---------------------------------------------------------------------------------------------

ModelOutput = tuple[tuple[str, dict[str, float]], ...]


def cache_key(query: str) -> str:
    return normalize_text(query).casefold()


def _validated(query: str, rewrites: Any, probabilities: Any) -> ModelOutput:
    if not isinstance(rewrites, list) or not isinstance(probabilities, list) or len(probabilities) != len(rewrites):
        raise ModelError(f"model returned {len(rewrites) if isinstance(rewrites, list) else '?'} rewrites but "
                         f"{len(probabilities) if isinstance(probabilities, list) else '?'} tag rows for {query!r}")
    out = []
    for rewrite, probs in zip(rewrites, probabilities):
        if not isinstance(rewrite, str) or not isinstance(probs, dict):
            raise ModelError(f"model returned a malformed rewrite or tag row for {query!r}")
        clean = {name: float(probs.get(name, 0.0)) for name in TAG_BY_NAME}
        out.append((normalize_text(rewrite), clean))
    return tuple(out)


class ModelSource:
    """Model outputs for a query through the fallback ladder (see the module docstring). Thread-safe."""

    def __init__(self, model: RewriteModel | None, config: ChainConfig, cache: TTLCache) -> None:
        self.model = model
        self.config = config
        self.cache = cache
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=config.model_workers, thread_name_prefix="qrw-model")
        self._lock = threading.Lock()
        self._inflight: dict[str, concurrent.futures.Future] = {}
        self.failures = 0

    @property
    def name(self) -> str:
        return getattr(self.model, "name", "none") if self.model is not None else "none"

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def compute(self, query: str) -> ModelOutput:
        """Call the model now, in this thread (precompute, calibration)."""
        assert self.model is not None
        combined = getattr(self.model, "rewrite_and_tag", None)
        if callable(combined):  # one call: the runtime tags while the prompt's prefix KV cache is at hand
            pairs = [(r, p) for r, p in combined([query], self.config.num_rewrites)[0] if isinstance(r, str) and normalize_text(r)]
            pairs = pairs[: self.config.num_rewrites]
            return _validated(query, [r for r, _ in pairs], [p for _, p in pairs])
        rewrites = self.model.generate([query], self.config.num_rewrites)[0]
        rewrites = [r for r in rewrites if isinstance(r, str) and normalize_text(r)][: self.config.num_rewrites]
        probabilities = self.model.tag([(query, r) for r in rewrites]) if rewrites else []
        return _validated(query, list(rewrites), list(probabilities))

    def compute_batch(self, queries: Sequence[str]) -> list[ModelOutput]:
        """``compute`` for many queries in one model call where the model offers it (``qrw precompute``)."""
        assert self.model is not None
        combined = getattr(self.model, "rewrite_and_tag", None)
        if not callable(combined):
            return [self.compute(q) for q in queries]
        outputs = []
        for query, found in zip(queries, combined(list(queries), self.config.num_rewrites)):
            pairs = [(r, p) for r, p in found if isinstance(r, str) and normalize_text(r)][: self.config.num_rewrites]
            outputs.append(_validated(query, [r for r, _ in pairs], [p for _, p in pairs]))
        return outputs

    def is_fresh(self, query: str) -> bool:
        """True when a fresh cache entry answers ``query`` (no model call, no waiting)."""
        return self.cache.is_fresh(cache_key(query))

    def _submit(self, query: str, key: str) -> concurrent.futures.Future:
        with self._lock:
            future = self._inflight.get(key)
            if future is not None:
                return future
            if len(self._inflight) >= self.config.max_pending:
                raise ModelBusy(f"{len(self._inflight)} model calls pending (max_pending {self.config.max_pending})")
            future = self._pool.submit(self.compute, query)
            self._inflight[key] = future

        def finished(done: concurrent.futures.Future) -> None:
            with self._lock:
                self._inflight.pop(key, None)
            if not done.cancelled() and done.exception() is None:
                self.cache.put(key, done.result())

        future.add_done_callback(finished)
        return future

    def outputs(self, query: str, deadline: float) -> tuple[ModelOutput, str, str | None]:
        """(outputs, origin, error): origin is ``cache``, ``model``, ``stale`` or ``none``."""
        key = cache_key(query)
        hit = self.cache.get(key)
        if hit is not None and hit.fresh:
            return hit.value, "cache", None
        fallback: tuple[ModelOutput, str] = (hit.value, "stale") if hit is not None else ((), "none")
        if self.model is None:
            return (*fallback, "no model loaded")
        try:
            future = self._submit(query, key)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ModelTimeout("no time left for the model")
            try:
                return future.result(timeout=remaining), "model", None
            except concurrent.futures.TimeoutError:
                raise ModelTimeout(f"model did not answer within {self.config.deadline_ms:.0f} ms") from None
            except ModelError:
                raise
            except Exception as exc:  # noqa: BLE001 - any model failure falls back, never reaches the client
                raise ModelError(f"model failed: {type(exc).__name__}: {exc}") from exc
        except ModelError as exc:
            self.failures += 1
            log.warning("rewrite model fallback (%s) for %r: %s", fallback[1], query[:80], exc.message)
            return (*fallback, exc.message)

    def precompute(self, queries: Sequence[str]) -> int:
        """Fill the cache for ``queries`` now (no deadline); returns how many succeeded."""
        done = 0
        for query in queries:
            if not normalize_text(query) or self.model is None:
                continue
            try:
                self.cache.put(cache_key(query), self.compute(query))
                done += 1
            except Exception as exc:  # noqa: BLE001
                log.warning("precompute failed for %r: %s", query[:80], exc)
        return done


class _ModelRewriter:
    def __init__(self, source: ModelSource, context: RequestContext) -> None:
        self.source = source
        self.context = context

    def rewrite(self, candidates: list[Candidate], step: StepLog) -> list[Candidate]:
        started = time.perf_counter()
        outputs, origin, error = self.source.outputs(self.context.query, self.context.deadline)
        self.context.model_ms = (time.perf_counter() - started) * 1000.0
        self.context.model_origin, self.context.model_error = origin, error
        step.action("model", None, origin=origin, model=self.source.name, error=error, count=len(outputs))
        source = "model" if origin == "model" else f"model:{origin}"
        return candidates + [Candidate(text, source, probs) for text, probs in outputs]


@dataclasses.dataclass
class ModelRewriterFactory:
    source: ModelSource
    id: str = "model"

    def create(self, context: RequestContext) -> Rewriter:
        return _ModelRewriter(self.source, context)


# ---------------------------------------------------------------------------------------------
# Guards, gate, rules
# ---------------------------------------------------------------------------------------------


class _GuardRewriter:
    def __init__(self, factory: GuardsFactory, context: RequestContext) -> None:
        self.factory = factory
        self.context = context

    def rewrite(self, candidates: list[Candidate], step: StepLog) -> list[Candidate]:
        live = [c for c in candidates if c.dropped_by is None and c.rule is None]
        reasons = guards.check(self.context.query, [c.text for c in live], self.factory.config, self.factory.brands)
        verdict = {id(c): reason for c, reason in zip(live, reasons)}
        out = []
        for candidate in candidates:
            reason = verdict.get(id(candidate))
            if reason is not None:
                step.action("drop", candidate.text, reason=reason)
                candidate = dataclasses.replace(candidate, dropped_by=f"{self.factory.id}: {reason}")
            out.append(candidate)
        return out


@dataclasses.dataclass
class GuardsFactory:
    config: GuardConfig
    id: str = "guards"

    def __post_init__(self) -> None:
        self.brands = guards.load_brands(self.config)

    def create(self, context: RequestContext) -> Rewriter:
        return _GuardRewriter(self, context)


class _GateRewriter:
    def __init__(self, config: GateConfig) -> None:
        self.config = config

    def rewrite(self, candidates: list[Candidate], step: StepLog) -> list[Candidate]:
        out = []
        for candidate in candidates:
            if candidate.dropped_by is None and candidate.decision is None and candidate.probabilities is not None:
                decision = gate_policy.decide(candidate.probabilities, self.config)
                step.action(decision.action, candidate.text, weight=decision.weight, tag=decision.tag,
                            probability=round(decision.probability, 4), reason=decision.reason)
                candidate = dataclasses.replace(candidate, decision=decision)
            out.append(candidate)
        return out


@dataclasses.dataclass
class GateFactory:
    config: GateConfig
    id: str = "gate"

    def create(self, context: RequestContext) -> Rewriter:
        return _GateRewriter(self.config)


class _RulesRewriter:
    def __init__(self, rules: RuleSet, context: RequestContext) -> None:
        self.applied = rules.for_query(context.query)

    def rewrite(self, candidates: list[Candidate], step: StepLog) -> list[Candidate]:
        if not self.applied.pins and not self.applied.blocks:
            return candidates
        pinned = {guards.copy_key(text) for text, _, _ in self.applied.pins}
        out = []
        for candidate in candidates:
            if candidate.dropped_by is None and guards.copy_key(candidate.text) in pinned:
                step.action("replace", candidate.text, reason="a pin gives the same rewrite")
                continue
            block = next((b for b in self.applied.blocks if b.blocks(candidate.text)), None)
            if candidate.dropped_by is None and block is not None:
                step.action("block", candidate.text, rule=block.rule)
                candidate = dataclasses.replace(candidate, dropped_by=f"rules: blocked by {block.rule}", rule=block.rule)
            out.append(candidate)
        for text, weight, rule in self.applied.pins:
            step.action("pin", text, weight=weight, rule=rule)
            out.append(Candidate(text, "rule", None, gate_policy.pinned(weight, rule), None, rule))
        return out


@dataclasses.dataclass
class RulesFactory:
    rules: RuleSet
    id: str = "rules"

    def create(self, context: RequestContext) -> Rewriter:
        return _RulesRewriter(self.rules, context)


# ---------------------------------------------------------------------------------------------
# The chain
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ChainResult:
    query: str
    candidates: list[Candidate]
    context: RequestContext
    ms: float

    @property
    def kept(self) -> list[Candidate]:
        return [c for c in self.candidates if c.kept]


class Chain:
    """An ordered list of rewriter factories with unique ids."""

    def __init__(self, factories: Sequence[RewriterFactory]) -> None:
        ids = [factory.id for factory in factories]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            from qrw.errors import ConfigError

            raise ConfigError(f"rewriter ids must be unique in a chain; repeated: {', '.join(duplicates)}")
        self.factories = tuple(factories)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(f.id for f in self.factories)

    def run(self, query: str, deadline: float, explain: Explain | None = None) -> ChainResult:
        explain = explain or Explain("off")
        context = RequestContext(query, deadline, explain)
        started = time.perf_counter()
        candidates: list[Candidate] = []
        for factory in self.factories:
            with explain.step(factory.id) as step:
                try:
                    candidates = factory.create(context).rewrite(candidates, step)
                except Exception as exc:  # noqa: BLE001 - a broken step leaves the candidates as they were
                    log.exception("rewriter %r failed for %r", factory.id, query[:80])
                    step.action("error", None, error=f"{type(exc).__name__}: {exc}")
        return ChainResult(query, candidates, context, (time.perf_counter() - started) * 1000.0)
