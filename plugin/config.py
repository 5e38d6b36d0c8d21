"""Serving configuration: frozen pydantic models, validated once at start, loaded from one YAML file.

Why frozen and strict: the proxy and the drop-in client read these values on every request from many
threads; nothing may change them after start, and a typo in a key (``treshold``) must fail at load,
naming the key, instead of silently keeping a default.

File layout (every section optional, every field has its default here and nowhere else)::

    gate:    {full_min: 0.5, keep_min: 0.5, full_weight: 1.0, down_weight: 0.3}
    chain:   {num_rewrites: 3, max_query_chars: 200, deadline_ms: 150, ...}
    guards:  {brands: [hp, canon], brands_file: brands.txt, brands_field: supplier.raw, ...}
    merge:   {rewrite_operator: and, mode: confident}
    recovery: {zero_hits: true, fuzziness: AUTO, skip_fields: ["*.join"]}
    respell: {enabled: true, field: all_text.std, weight: 1.0, ...}
    cache:   {max_entries: 10000, ttl_s: 3600, store: file, file: cache.sqlite, precompute_file: queries.txt}
    proxy:   {rewrite_indices: ["products*"], upstreams: [http://127.0.0.1:9200], debug_networks: [127.0.0.1/32], ...}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from qrw.errors import ConfigError


SERVING_NAME = "serving.yaml"
"""A model folder's shipped serving settings (the gate calibrated on training folds, the merge)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------------------------------------
# Gate: (tag probabilities) -> full weight, down-weight, drop
# ---------------------------------------------------------------------------------------------


class GateConfig(_Frozen):
    """Thresholds of the gate policy (see ``gate.decide``). ``qrw calibrate`` writes this section."""

    full_min: float = Field(0.5, ge=0.0, le=1.01, description="P(exact) at or above which a rewrite is OR-merged at full_weight (1.01 = never)")
    keep_min: float = Field(0.5, ge=0.0, le=1.01, description="P(exact)+P(substitute) at or above which a rewrite is kept down-weighted (1.01 = never)")
    full_weight: float = Field(1.0, gt=0.0, le=10.0, description="boost of a full-weight rewrite clause")
    down_weight: float = Field(0.3, gt=0.0, lt=1.0, description="boost of a down-weighted rewrite clause (below 1)")
    respelling_keep_min: float = Field(0.1, ge=0.0, le=1.01, description="a lower keep_min for rewrites that respell the "
                                       "query (a typo fixed, words joined or split; qrw.plugin.widening): kept "
                                       "down-weighted at or above it (1.01 = no lower threshold)")

    @model_validator(mode="after")
    def _check(self) -> GateConfig:
        if self.down_weight >= self.full_weight:
            raise ValueError(
                f"down_weight {self.down_weight} must be below full_weight {self.full_weight}; lower down_weight"
            )
        return self


# ---------------------------------------------------------------------------------------------
# Chain: model rewriter, guards, deadline
# ---------------------------------------------------------------------------------------------


class GuardConfig(_Frozen):
    """Which guards run, and the brand vocabulary the brand guard checks."""

    no_new_brand: bool = Field(True, description="drop a rewrite that names a brand the query does not name (needs a brand list)")
    no_new_number: bool = Field(True, description="drop a rewrite that holds a number the query does not hold")
    keep_brand: bool = Field(False, description="drop a rewrite that loses a brand named in the query (off by default: "
                             "the original clause stays in the merged query, so a brand-less rewrite only re-ranks)")
    keep_numbers: bool = Field(False, description="drop a rewrite that loses a number (with its unit) of the query "
                               "(off by default, for the same reason)")
    keep_negations: bool = Field(True, description="drop a rewrite that loses a negation (-x, without x, no x, not x)")
    keep_head: bool = Field(True, description="drop a rewrite that keeps every query word and appends more after them "
                            "(tv -> tv remote): the last noun names the product, so it asks for another product")
    drop_copies: bool = Field(True, description="drop rewrites equal to the query or to an earlier rewrite (case, punctuation and spacing ignored)")
    max_rewrite_words: int = Field(12, ge=1, le=64, description="drop longer rewrites")
    brands: tuple[str, ...] = Field((), description="brand names (case-insensitive), e.g. the catalog's suppliers")
    brands_file: Path | None = Field(None, description="a file with one brand per line, added to `brands`")
    brands_field: str | None = Field(None, description="a keyword field of the index whose values are brands "
                                     "(e.g. supplier.raw); read from the index (the proxy at start, a drop-in client before its first "
                                     "search) and added to `brands`")
    brands_max: int = Field(5000, ge=1, le=100_000, description="at most this many brands are read from brands_field")


class MergeConfig(_Frozen):
    """How kept rewrites enter the query."""

    rewrite_operator: Literal["and", "or", "same"] = Field(
        "and", description="operator of each rewrite clause: 'and' adds only documents holding every rewrite term "
        "(keeps the result set from flooding), 'same' copies the original clause's")
    mode: Literal["expand", "confident", "rerank"] = Field(
        "confident", description="which rewrites may add documents the original does not match: 'expand' every kept "
        "rewrite; 'confident' only full-weight ones (P(exact) >= full_min), merchandisers' rules and respellings of the query "
        "(labtop -> laptop, smart watch -> smartwatch), other down-weighted ones "
        "only reorder the original's matches; 'rerank' none (the hit count stays the original's; no results stay no results "
        "unless recovery.zero_hits retries them)")


class RecoveryConfig(_Frozen):
    """What happens when a search finds nothing (``qrw.plugin.recovery``)."""

    zero_hits: bool = Field(True, description="when a first-page search finds nothing, search once more with its match "
                                              "and multi_match clauses made fuzzy; a query with results is never changed")
    fuzziness: str = Field("AUTO", description="OpenSearch fuzziness of that retry: 0, 1, 2, AUTO or AUTO:low,high")
    prefix_length: int = Field(1, ge=0, le=10, description="leading letters a fuzzy match must keep (OpenSearch "
                                                       "prefix_length), as the respelling suggester does: a first letter "
                                                       "is rarely the typo, and without it 'cellphone' finds telephone cords")
    skip_fields: tuple[str, ...] = Field(("*.join",), description="fnmatch patterns of fields the retry keeps exact "
                                                                 "(fuzziness on joined word pairs matches far too much)")

    @model_validator(mode="after")
    def _check(self) -> RecoveryConfig:
        import re

        if not re.fullmatch(r"AUTO(:\d+,\d+)?|[012]", self.fuzziness):
            raise ValueError(f"fuzziness {self.fuzziness!r}: OpenSearch takes 0, 1, 2, AUTO or AUTO:low,high")
        return self


class RespellConfig(_Frozen):
    """Correcting words the index does not hold, with OpenSearch's term suggester (``qrw.plugin.respell``)."""

    enabled: bool = Field(True, description="ask the index which query words no document holds and serve the query "
                                            "with them corrected as a respelling (only plausible typing slips; words "
                                            "with digits never change); one suggest request per new query text")
    field: str = Field("all_text.std", description="an unstemmed text field whose words are the vocabulary (qrw's "
                                                   "index layout: the catch-all's standard-analyzer sub-field)")
    weight: float = Field(1.0, gt=0.0, le=10.0, description="boost of the corrected query's clause (1: chosen on misspelled training-fold queries, docs/eval/headroom.md §17)")
    vowel_slips: bool = Field(True, description="also take one vowel written for another (moniter -> monitor) in "
                                                "typed words of at least 5 letters (shorter ones have real vowel "
                                                "neighbours: bose, base)")
    rewrite_respelled: bool = Field(True, description="the model, guards and gate work on the respelled text when the "
                                                      "index respells a query (false: on the text as typed, as before "
                                                      "docs/eval/headroom.md §17d)")
    sound_slips: bool = Field(True, description="also take one consonant written for the one that sounds alike "
                                                "(labtop -> laptop: b/p, d/t, g/k, f/v, s/z, c/k, c/s) in typed words "
                                                "of at least 5 letters")
    max_edits: int = Field(2, ge=1, le=2, description="term suggester max_edits")
    prefix_length: int = Field(1, ge=0, le=10, description="leading letters a correction must keep (term suggester prefix_length)")
    min_word_length: int = Field(4, ge=1, le=50, description="shorter words are never corrected")
    suggestions: int = Field(3, ge=1, le=20, description="suggestions read per word; the first plausible typo fix is taken")
    join_split_words: bool = Field(True, description="also join two adjacent query words the catalog writes as one "
                                                     "(key board -> keyboard, head set -> headset) when more documents hold "
                                                     "the joined word than the two words as a phrase; counted in the same "
                                                     "request (docs/eval/headroom.md §20)")
    join_min_docs: int = Field(3, ge=1, le=1_000_000, description="documents that must hold the joined word before a split pair is joined")
    timeout_ms: float = Field(100.0, gt=0.0, le=60_000.0, description="a slower suggest answer (or index-wide check of a multi-shard answer's "
                              "corrections) is given up (the query goes without a respelling)")


class ChainConfig(_Frozen):
    """How the model is asked and how long a request may wait for it."""

    num_rewrites: int = Field(3, ge=1, le=16, description="rewrites generated per query")
    max_query_chars: int = Field(200, ge=1, le=10_000, description="longer query texts are not rewritten (sent unchanged)")
    deadline_ms: float = Field(150.0, gt=0.0, le=60_000.0, description="budget for the model per request; past it the fallback ladder answers")
    model_workers: int = Field(1, ge=1, le=64, description="threads running model calls")
    max_pending: int = Field(32, ge=1, le=10_000, description="model calls waiting or running; beyond this, requests fall back at once")
    explain_level: Literal["ids", "details"] = Field("details", description="detail of the explain log when a request asks for it")
    decoding: Literal["greedy", "beam"] = Field("greedy", description="how an ONNX model writes rewrites: greedy (one sequence listing them, prompt v2: the least work) or beam (num_rewrites beams, each read as a list: for models trained on one rewrite per sequence)")
    propose: bool = Field(False, description="greedy: when the model answers 'none' (no rewrite needed), still take its best rewrite, so the tags and the gate decide (the tagger as the trigger); off: the model's own 'none' is the trigger. `qrw train calibrate` measures both and ships the better in serving.yaml")
    warm_up: bool = Field(True, description="run the model through the serving path on every model worker thread at start, before traffic is accepted (the first query then meets a warm model)")


class CacheConfig(_Frozen):
    """The cache of model outputs (rewrites and tag probabilities) per normalised query: an in-memory
    LRU, in front of a persistent store keyed by model hash (see ``qrw.plugin.cache``)."""

    max_entries: int = Field(10_000, ge=0, le=10_000_000, description="in-memory entries; 0 disables the cache (and its store)")
    ttl_s: float = Field(3600.0, gt=0.0, description="in-memory entries older than this are refreshed; they stay usable as a fallback")
    precompute_file: Path | None = Field(None, description="queries (one a line) whose rewrites are computed at start")
    store: Literal["memory", "file", "redis"] = Field("file", description="where model outputs persist across restarts and are shared between processes: memory (nowhere), file (a SQLite file on this machine) or redis (Valkey or Redis, shared by proxies on several machines); only models with a hash (exported ONNX folders) are persisted")
    file: Path | None = Field(None, description="the SQLite file of store: file (default: $QRW_CACHE_DIR/rewrite-cache.sqlite, QRW_CACHE_DIR defaulting to ~/.cache/qrw)")
    redis_url: str | None = Field(None, description="the server of store: redis, e.g. redis://127.0.0.1:6379/0 (rediss:// for TLS)")
    redis_timeout_s: float = Field(0.05, gt=0.0, le=10.0, description="socket timeout of one store: redis call; a slower answer counts as a miss")
    key_prefix: str = Field("qrw:rewrites", min_length=1, max_length=200, description="first part of every persistent key ({key_prefix}:{model hash}:n{num_rewrites}:{query})")
    persist_ttl_s: float | None = Field(None, gt=0.0, description="stored entries older than this are refreshed (kept as a fallback); unset: never (one model's greedy outputs do not change)")

    @model_validator(mode="after")
    def _check_store(self) -> CacheConfig:
        if self.store == "redis" and not self.redis_url:
            raise ValueError("store: redis needs redis_url (e.g. redis://127.0.0.1:6379/0)")
        return self

    def store_file(self) -> Path:
        """The SQLite file of ``store: file``."""
        if self.file is not None:
            return self.file.expanduser()
        import os

        return Path(os.environ.get("QRW_CACHE_DIR", Path.home() / ".cache" / "qrw")).expanduser() / "rewrite-cache.sqlite"


class ProxyConfig(_Frozen):
    """The REST proxy: which indices it rewrites, its limits, its upstream nodes, who may see its debug surfaces."""

    rewrite_indices: tuple[str, ...] = Field(("*",), description="fnmatch patterns; a search is rewritten only if every index it names matches; a search on all indices (no index, _all or *) only if '*' or '_all' is listed")
    upstreams: tuple[str, ...] = Field((), description="OpenSearch node base URLs (http://host:port); `qrw proxy --upstream` adds to this list. Requests are spread over the healthy ones; idempotent reads are retried on another node")
    max_body_bytes: int = Field(104_857_600, ge=1024, le=2_147_483_647, description="larger request bodies are refused with 413; the default is OpenSearch's own http.max_content_length (100 MB)")
    max_json_depth: int = Field(200, ge=8, le=900, description="search, count, explain, validate, by-query, reindex and alias bodies nested deeper than this (objects and arrays) are refused with a 400 before they reach OpenSearch: about 400 nested bool queries crash the node with a StackOverflowError")
    upstream_timeout_s: float | None = Field(None, gt=0.0, le=86_400.0, description="read timeout towards OpenSearch; none by default, so OpenSearch's own timeouts (e.g. ?timeout=35s) decide")
    connect_timeout_s: float = Field(5.0, gt=0.0, le=600.0, description="time to open a connection to a node before trying the next one")
    max_connections: int = Field(256, ge=1, le=10_000, description="pooled keep-alive connections per node and worker process")
    pool_timeout_s: float = Field(10.0, gt=0.0, le=600.0, description="how long a request waits for a free pooled connection before a 503")
    health_interval_s: float = Field(1.0, gt=0.0, le=3600.0, description="seconds between health checks of each upstream node")
    retry_reads: bool = Field(True, description="retry idempotent reads (GET/HEAD, _search, _msearch, _count, ...) on another node when a node fails or answers 503")
    debug_networks: tuple[str, ...] = Field((), description="client networks (CIDR, e.g. 127.0.0.1/32) allowed to use the debug surfaces: the X-QRW-Explain header, ext.qrw.explain, /_qrw/stats, /_qrw/metrics. Empty and no debug_token: debug surfaces are off")
    debug_token: str | None = Field(None, min_length=16, description="shared secret; a request carrying it in the X-QRW-Debug-Token header may use the debug surfaces from any network")
    announce_changes: bool = Field(True, description="tell the client when a _search was changed in a way a shop should show: "
                                   "X-QRW-Respelling (the index respelling served beside the query, percent-encoded UTF-8: "
                                   "'including results for ...') and X-QRW-Zero-Hit-Retry: fuzzy (the answer comes from the "
                                   "fuzzy retry of a search that found nothing: 'no exact match; similar products'); for an _msearch, "
                                   "by item position: X-QRW-Respelling: 0=headset, X-QRW-Zero-Hit-Retry: 2=fuzzy")
    workers: int = Field(1, ge=1, le=64, description="proxy worker processes (`qrw proxy --workers`); each loads its own model and cache")

    @model_validator(mode="after")
    def _check(self) -> ProxyConfig:
        import ipaddress

        for network in self.debug_networks:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ValueError(f"debug_networks: {network!r} is not a network (use CIDR like 10.0.0.0/8): {exc}") from None
        for url in self.upstreams:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"upstreams: {url!r} must start with http:// or https://")
        return self


class PluginConfig(_Frozen):
    """Everything the serving side reads, one section per part."""

    gate: GateConfig = GateConfig()
    chain: ChainConfig = ChainConfig()
    guards: GuardConfig = GuardConfig()
    merge: MergeConfig = MergeConfig()
    recovery: RecoveryConfig = RecoveryConfig()
    respell: RespellConfig = RespellConfig()
    cache: CacheConfig = CacheConfig()
    proxy: ProxyConfig = ProxyConfig()


def _read_sections(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (gate, chain, guards, merge, recovery, respell, cache, proxy)")
    return loaded


def load_config(path: str | Path | None = None, *, shipped: str | Path | None = None, **overrides: dict) -> PluginConfig:
    """Defaults, then a model's ``shipped`` serving file (its calibrated gate), then the YAML file at ``path``
    (unknown keys fail), then per-section ``overrides``. Each layer overrides keys, not whole sections."""
    data: dict = {}
    for layer in (shipped, path):
        if layer is None:
            continue
        for section, values in _read_sections(Path(layer)).items():
            if isinstance(values, dict) and isinstance(data.get(section), dict):
                data[section] = {**data[section], **values}
            else:
                data[section] = values
    for section, values in overrides.items():
        data.setdefault(section, {})
        data[section] = {**(data[section] or {}), **values}
    try:
        return PluginConfig.model_validate(data)
    except ValidationError as exc:
        where = f" in {path}" if path is not None else ""
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid plugin config{where}: {problems}") from exc


def dump_gate(gate: GateConfig) -> str:
    """The ``gate`` section as YAML, as ``qrw calibrate`` writes it."""
    return yaml.safe_dump({"gate": gate.model_dump()}, sort_keys=False)
