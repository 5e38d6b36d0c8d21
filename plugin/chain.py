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

import atexit
import concurrent.futures
import dataclasses
import functools
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, Protocol

from qrw.plugin import gate as gate_policy
from qrw.plugin import guards
from qrw.plugin.config import ChainConfig, GateConfig, GuardConfig
from qrw.plugin.errors import ModelBusy, ModelError, ModelTimeout
from qrw.plugin.gate import Decision
from qrw.plugin.model import RewriteModel
from qrw.plugin.prompt import TAG_BY_NAME, normalize_text
from qrw.plugin.rules import RuleSet
from qrw.plugin.widening import is_respelling

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
    prefetched: tuple[ModelOutput, str, str | None] | None = None
    """Model outputs the caller already fetched from ``ModelSource.outputs`` (the model step uses them)."""


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


class RewriteCache(Protocol):
    """What ``ModelSource`` needs from a cache of model outputs (``cache.TTLCache`` in process).

    A shared backend (for example Valkey, so that several proxy workers or proxies share one cache)
    plugs in by implementing these four methods and being passed to ``ModelSource`` in place of the
    ``TTLCache``: ``get`` returns an object with ``value`` and ``fresh`` (or None), ``put`` stores a
    ``ModelOutput``, ``is_fresh`` and ``peek`` (a fresh value or None) answer without counting,
    ``stats`` returns a JSON-able dict. Optional: ``fresh_hit(key)``, ``is_fresh`` then a counted ``get``
    in one step (the proxy's remembered cache hits use it where offered, else those two calls).
    """

    def get(self, key: str) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...

    def is_fresh(self, key: str) -> bool: ...

    def peek(self, key: str) -> Any: ...

    def stats(self) -> dict: ...


class _Call:
    """One model call, queued or running; requests for the same query share it."""

    __slots__ = ("key", "query", "future", "waiters", "started")

    def __init__(self, key: str, query: str, waiters: int) -> None:
        self.key = key
        self.query = query
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self.waiters = waiters
        self.started = False


def _reason(exc: ModelError) -> str:
    if isinstance(exc, ModelTimeout):
        return "timeout"
    if isinstance(exc, ModelBusy):
        return "busy"
    return "error"


CLOSE_WAIT_S = 30.0
"""How long ``ModelSource.close`` waits for a model call still running (one call takes well under this)."""

_STARTED: weakref.WeakSet = weakref.WeakSet()
"""Model sources whose worker threads are running: closed at interpreter exit (``_close_at_exit``)."""


@atexit.register
def _close_at_exit() -> None:
    """Close every model source still open when the interpreter exits.

    Why: the workers are daemon threads (a forgotten client must not keep a process alive), and a script
    that ends without ``client.close()`` while a call that outlived its request is still inside ONNX
    Runtime's native code had the runtime torn down under it: the process aborted ("terminate called
    without an active exception", exit status 134). ``atexit`` runs before that teardown, so the call is
    waited for (up to ``CLOSE_WAIT_S``)."""
    for source in list(_STARTED):
        source.close()


class ModelSource:
    """Model outputs for a query through the fallback ladder (see the module docstring). Thread-safe.

    The model queue is built so that no client can make another wait (defect: 40 requests that asked
    for a 60 s deadline made other clients' uncached searches take 38 s):

    * a request's deadline is capped at the server's ``chain.deadline_ms``, whatever the client asks;
    * identical queries in flight share one call;
    * calls somebody is waiting for run before calls nobody waits for any more (those still run when
      the model is idle, to fill the cache for the next request);
    * the queue is bounded (``chain.max_pending``): when it is full of calls with waiters, or when
      the calls ahead would take longer than the request has left (estimated from recent call
      times), the request falls back at once instead of waiting for its deadline.
    """

    def __init__(self, model: RewriteModel | None, config: ChainConfig, cache: RewriteCache) -> None:
        self.model = model
        self.config = config
        self.cache = cache
        self._cond = threading.Condition()
        self._pending: list[_Call] = []
        self._inflight: dict[str, _Call] = {}
        self._running = 0
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.call_seconds: float | None = None
        """Moving average of recent model call durations (None before the first call)."""
        self.failures = 0
        self.on_outcome: Callable[[str, str | None], None] | None = None
        """Metrics hook: (origin, fallback reason or None) once per query asked."""
        self.on_model_call: Callable[[float], None] | None = None
        """Metrics hook: the duration of each model call."""

    @property
    def name(self) -> str:
        return getattr(self.model, "name", "none") if self.model is not None else "none"

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """Cancel the queued calls and wait up to ``wait_s`` for a running one to finish.

        Why wait: a call that outlived its request's deadline may still be inside the model's native
        code; a process that exits then (a script closing its client, a proxy shutting down) tears
        the runtime down under it, and ONNX Runtime aborts the whole process ("terminate called
        without an active exception")."""
        with self._cond:
            self._closed = True
            for call in self._pending:
                call.future.cancel()
            self._pending.clear()
            self._cond.notify_all()
        _STARTED.discard(self)
        deadline = time.monotonic() + wait_s
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

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

    # -- the queue -------------------------------------------------------------------------------

    def _start_workers(self) -> None:
        if not self._threads:
            _STARTED.add(self)
            for i in range(self.config.model_workers):
                thread = threading.Thread(target=self._work, name=f"qrw-model-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                call = next((c for c in self._pending if c.waiters > 0), self._pending[0])
                self._pending.remove(call)
                call.started = True
                self._running += 1
            started = time.perf_counter()
            result: ModelOutput | None = None
            error: BaseException | None = None
            try:
                result = self.compute(call.query)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiters
                error = exc
            seconds = time.perf_counter() - started
            with self._cond:
                self._running -= 1
                if self._inflight.get(call.key) is call:
                    del self._inflight[call.key]
                self.call_seconds = seconds if self.call_seconds is None else 0.7 * self.call_seconds + 0.3 * seconds
            if error is None:
                self.cache.put(call.key, result)
                call.future.set_result(result)
            else:
                call.future.set_exception(error)
            if self.on_model_call is not None:
                self.on_model_call(seconds)

    def _submit(self, query: str, key: str, remaining: float) -> tuple[_Call, bool]:
        """(the call for ``key``, whether to wait for it). Raises ``ModelBusy`` when nothing can be queued."""
        with self._cond:
            if self._closed:
                raise ModelBusy("the model queue is closed")
            call = self._inflight.get(key)
            if call is not None:
                call.waiters += 1
                return call, True
            if len(self._inflight) >= self.config.max_pending:
                abandoned = next((c for c in self._pending if c.waiters == 0), None)
                if abandoned is None:
                    raise ModelBusy(f"{len(self._inflight)} model calls pending (max_pending {self.config.max_pending})")
                self._pending.remove(abandoned)
                del self._inflight[abandoned.key]
                abandoned.future.cancel()
            ahead = self._running + sum(1 for c in self._pending if c.waiters > 0)
            rounds = ahead // self.config.model_workers + 1
            wait = self.call_seconds is None or rounds * self.call_seconds <= remaining
            call = _Call(key, query, 1 if wait else 0)
            self._pending.append(call)
            self._inflight[key] = call
            self._start_workers()
            self._cond.notify()
        if not wait:
            raise ModelBusy(f"{ahead} model calls ahead would take ~{rounds * self.call_seconds * 1000:.0f} ms; "
                            f"{remaining * 1000:.0f} ms left (the call still runs to fill the cache)")
        return call, True

    def _give_up(self, call: _Call) -> None:
        with self._cond:
            call.waiters = max(0, call.waiters - 1)

    def count_cache_hit(self) -> None:
        """Record a fresh cache hit answered outside ``outputs`` (the engine's remembered verdicts)."""
        self._done("cache", None)

    def _done(self, origin: str, reason: str | None) -> None:
        if self.on_outcome is not None:
            self.on_outcome(origin, reason)

    def outputs(self, query: str, deadline: float) -> tuple[ModelOutput, str, str | None]:
        """(outputs, origin, error): origin is ``cache``, ``model``, ``stale`` or ``none``.

        ``deadline`` (a ``time.monotonic()`` value) is capped at the server's ``chain.deadline_ms``.
        """
        now = time.monotonic()
        deadline = min(deadline, now + self.config.deadline_ms / 1000.0)
        key = cache_key(query)
        hit = self.cache.get(key)
        if hit is not None and hit.fresh:
            self._done("cache", None)
            return hit.value, "cache", None
        fallback: tuple[ModelOutput, str] = (hit.value, "stale") if hit is not None else ((), "none")
        if self.model is None:
            self._done(fallback[1], "no_model")
            return (*fallback, "no model loaded")
        try:
            remaining = deadline - now
            if remaining <= 0:
                raise ModelTimeout("no time left for the model")
            call, _ = self._submit(query, key, remaining)
            try:
                result = call.future.result(timeout=max(0.0, deadline - time.monotonic()))
            except concurrent.futures.TimeoutError:
                self._give_up(call)
                raise ModelTimeout(f"model did not answer within {(deadline - now) * 1000:.0f} ms") from None
            except concurrent.futures.CancelledError:
                raise ModelBusy("the model call was cancelled") from None
            except ModelError:
                raise
            except Exception as exc:  # noqa: BLE001 - any model failure falls back, never reaches the client
                raise ModelError(f"model failed: {type(exc).__name__}: {exc}") from exc
            self._done("model", None)
            return result, "model", None
        except ModelError as exc:
            self.failures += 1
            log.warning("rewrite model fallback (%s): %s", fallback[1], exc.message)
            self._done(fallback[1], _reason(exc))
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
        if self.context.prefetched is not None:
            outputs, origin, error = self.context.prefetched
        else:
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
        reasons = self.factory.check(self.context.query, tuple(c.text for c in live))
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
        # The guards are a pure function of (query, rewrites) and cost ~60 µs a request; on the
        # cache-hit path the same pairs come back again and again, so their verdicts are memoised.
        self._memo = functools.lru_cache(maxsize=20_000)(self._check)

    def check(self, query: str, rewrites: tuple[str, ...]) -> tuple[str | None, ...]:
        return self._memo(query, rewrites, self.brands)  # the vocabulary is part of the key: it may grow at run time

    def _check(self, query: str, rewrites: tuple[str, ...], brands: frozenset[str]) -> tuple[str | None, ...]:
        return tuple(guards.check(query, list(rewrites), self.config, brands))

    def create(self, context: RequestContext) -> Rewriter:
        return _GuardRewriter(self, context)


class _GateRewriter:
    def __init__(self, config: GateConfig, query: str) -> None:
        self.config = config
        self.query = query

    def rewrite(self, candidates: list[Candidate], step: StepLog) -> list[Candidate]:
        out = []
        for candidate in candidates:
            if candidate.dropped_by is None and candidate.decision is None and candidate.probabilities is not None:
                decision = gate_policy.decide(candidate.probabilities, self.config,
                                              respelling=functools.partial(is_respelling, self.query, candidate.text))
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
        return _GateRewriter(self.config, context.query)


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

    def run(self, query: str, deadline: float, explain: Explain | None = None,
            prefetched: tuple[ModelOutput, str, str | None] | None = None) -> ChainResult:
        explain = explain or Explain("off")
        context = RequestContext(query, deadline, explain, prefetched=prefetched)
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
