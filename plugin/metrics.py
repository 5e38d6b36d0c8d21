"""Prometheus metrics of the proxy, served at ``/_qrw/metrics`` through prometheus-client.

What is counted, and why each one matters to an operator:

* ``qrw_proxy_requests_total{route,status}`` and ``qrw_proxy_request_seconds{route}``: traffic and
  errors per route (``search``, ``msearch``, ``passthrough``, ``qrw``);
* ``qrw_search_bodies_total{result}``: search bodies ``rewritten`` (at least one rewrite served) or
  ``unchanged``;
* ``qrw_model_outputs_total{origin}``: where a query's rewrites came from: ``cache`` (fresh hit),
  ``model``, ``stale`` (fallback to an old entry) or ``none`` (fallback to the original query);
  the cache hit rate is ``cache / sum``;
* ``qrw_fallbacks_total{reason}``: ``timeout``, ``busy`` (queue full or too slow to answer in time),
  ``error``, ``no_model``;
* ``qrw_model_seconds`` and ``qrw_upstream_seconds``: latency histograms of model calls and of
  OpenSearch (time to response headers);
* ``qrw_upstream_retries_total``, ``qrw_log_lines_suppressed_total``.

With several worker processes (``qrw proxy --workers N``) each worker writes its values to files in
``PROMETHEUS_MULTIPROC_DIR`` (the CLI sets it) and a scrape adds them up (prometheus-client's
multiprocess mode), so one scrape sees the whole proxy.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """One set of metrics on its own registry (several apps in one process do not clash)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("qrw_proxy_requests", "Requests answered by the proxy", ["route", "status"], registry=r)
        self.request_seconds = Histogram("qrw_proxy_request_seconds", "Time from request to response headers", ["route"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.bodies = Counter("qrw_search_bodies", "Search bodies seen by the rewriter", ["result"], registry=r)
        self.outputs = Counter("qrw_model_outputs", "Where each query's rewrites came from", ["origin"], registry=r)
        self.fallbacks = Counter("qrw_fallbacks", "Requests served by the fallback ladder", ["reason"], registry=r)
        self.model_seconds = Histogram("qrw_model_seconds", "Duration of model calls", buckets=LATENCY_BUCKETS, registry=r)
        self.upstream_seconds = Histogram("qrw_upstream_seconds", "OpenSearch latency to response headers",
                                          buckets=LATENCY_BUCKETS, registry=r)
        self.retries = Counter("qrw_upstream_retries", "Requests sent again to another node", registry=r)
        self.recoveries = Counter("qrw_zero_hit_retries", "Empty searches sent again with fuzzy text clauses "
                                  "(qrw.plugin.recovery), by outcome", ["outcome"], registry=r)
        self.respellings = Counter("qrw_index_respellings", "Suggest requests for words the index does not hold "
                                   "(qrw.plugin.respell), by outcome", ["outcome"], registry=r)
        self.suppressed = Counter("qrw_log_lines_suppressed", "Repeated log lines dropped by the rate limit", registry=r)
        # Pre-create the label sets operators alert on, so they read 0 instead of being absent.
        for origin in ("cache", "model", "stale", "none"):
            self.outputs.labels(origin)
        for reason in ("timeout", "busy", "error", "no_model"):
            self.fallbacks.labels(reason)
        for result in ("rewritten", "unchanged"):
            self.bodies.labels(result)
        for outcome in ("recovered", "empty", "failed"):
            self.recoveries.labels(outcome)
        # Label children looked up once: ``labels()`` costs more than the increment itself, on every request.
        self._request_children: dict[tuple[str, int], tuple[object, object]] = {}
        self._body_children = {True: self.bodies.labels("rewritten"), False: self.bodies.labels("unchanged")}
        self._output_children: dict[str, object] = {}

    # -- hooks called by the proxy, the model source and the upstream pool
    def request(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        children = self._request_children.get(key)
        if children is None:
            children = self._request_children[key] = (self.requests.labels(route, str(status)),
                                                      self.request_seconds.labels(route))
        children[0].inc()  # type: ignore[attr-defined]
        children[1].observe(seconds)  # type: ignore[attr-defined]

    def body(self, rewritten: bool) -> None:
        self._body_children[rewritten].inc()

    def model_outcome(self, origin: str, reason: str | None) -> None:
        child = self._output_children.get(origin)
        if child is None:
            child = self._output_children[origin] = self.outputs.labels(origin)
        child.inc()  # type: ignore[attr-defined]
        if reason is not None:
            self.fallbacks.labels(reason).inc()

    def model_call(self, seconds: float) -> None:
        self.model_seconds.observe(seconds)

    def upstream(self, event: str, value: float) -> None:
        if event == "latency":
            self.upstream_seconds.observe(value)
        elif event == "retry":
            self.retries.inc()

    def recovery(self, outcome: str, count: int = 1) -> None:
        if count:
            self.recoveries.labels(outcome).inc(count)

    def respell(self, outcome: str, count: int = 1) -> None:
        if count:
            self.respellings.labels(outcome).inc(count)

    def render(self) -> bytes:
        """The text exposition; across all worker processes when running in multiprocess mode."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
