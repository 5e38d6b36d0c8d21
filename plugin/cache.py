"""The rewrite cache: a thread-safe in-memory LRU with a time-to-live, optionally in front of a
persistent store (a local SQLite file, or Valkey/Redis) keyed by model hash and normalised query.

Why stale entries are kept: the fallback ladder is "fresh model output, else what we cached before,
else the original query". An entry past its TTL is refreshed when the model answers in time; when it
does not, yesterday's rewrites are better than none. Entries leave memory only by LRU eviction.

Why a persistent store: a restarted proxy (or a new worker process, or a second proxy) would
otherwise meet every query cold, and on CPU a cold query costs a model call. ``qrw precompute``
fills the store ahead of traffic; every proxy sharing it starts warm.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger("qrw.plugin.cache")

Value = TypeVar("Value")


@dataclasses.dataclass(frozen=True)
class Hit(Generic[Value]):
    value: Value
    fresh: bool
    age_s: float


class TTLCache(Generic[Value]):
    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Value]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.stale_hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Hit[Value] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            stored_at, value = entry
            age = self._clock() - stored_at
            fresh = age < self.ttl_s
            if fresh:
                self.hits += 1
            else:
                self.stale_hits += 1
            return Hit(value, fresh, age)

    def peek(self, key: str) -> Value | None:
        """The value of a fresh entry, or None; neither counted in the stats nor moved in the LRU order."""
        with self._lock:
            entry = self._entries.get(key)
            return entry[1] if entry is not None and self._clock() - entry[0] < self.ttl_s else None

    def is_fresh(self, key: str) -> bool:
        """Whether a fresh entry exists; neither counted in the stats nor moved in the LRU order."""
        with self._lock:
            entry = self._entries.get(key)
            return entry is not None and self._clock() - entry[0] < self.ttl_s

    def fresh_hit(self, key: str) -> Value | None:
        """The value of a fresh entry, counted as a hit and moved in the LRU order as ``get`` does; None
        (nothing counted) when there is no fresh entry. ``is_fresh`` then ``get`` in one step, without a ``Hit``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self._clock() - entry[0] >= self.ttl_s:
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: str, value: Value) -> None:
        if self.max_entries <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def stats(self) -> dict:
        return {"entries": len(self._entries), "hits": self.hits, "stale_hits": self.stale_hits, "misses": self.misses}


# ---------------------------------------------------------------------------------------------
# Persistent stores: a local SQLite file (default) or Valkey/Redis, behind the in-memory LRU
# ---------------------------------------------------------------------------------------------


class StoreError(Exception):
    """A persistent store could not be read or written (the cache then acts as if it missed)."""


class RewriteStore(Protocol):
    """Where model outputs outlive the process: ``key -> (stored_at wall-clock seconds, JSON text)``."""

    description: str

    def load(self, key: str) -> tuple[float, str] | None: ...

    def save(self, key: str, value: str, stored_at: float) -> None: ...

    def close(self) -> None: ...


class FileStore:
    """A SQLite file (WAL mode): safe for several threads and several processes on one machine.

    Why SQLite: it ships with Python, a lookup by primary key takes tens of microseconds, and WAL lets
    the proxy's worker processes read while one of them (or ``qrw precompute``) writes.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.description = f"file {self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=5.0, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS rewrites (key TEXT PRIMARY KEY, stored_at REAL NOT NULL, value TEXT NOT NULL)")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the rewrite cache file {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def load(self, key: str) -> tuple[float, str] | None:
        try:
            with self._lock:
                row = self._db.execute("SELECT stored_at, value FROM rewrites WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"reading {self.path}: {exc}") from exc
        return (float(row[0]), str(row[1])) if row else None

    def save(self, key: str, value: str, stored_at: float) -> None:
        try:
            with self._lock:
                self._db.execute("INSERT OR REPLACE INTO rewrites (key, stored_at, value) VALUES (?, ?, ?)", (key, stored_at, value))
        except sqlite3.Error as exc:
            raise StoreError(f"writing {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()


class RedisStore:
    """Valkey or Redis (the ``redis`` client speaks to both): one cache shared by proxies on many machines.

    Each entry is a hash ``{stored_at, value}``; short socket timeouts, so a slow or absent server
    costs a request at most ``timeout_s`` before it is treated as a miss.
    """

    def __init__(self, url: str, *, timeout_s: float = 0.05) -> None:
        import redis

        self.description = f"redis {_redact(url)}"
        try:
            self._client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=max(timeout_s, 1.0),
                                                decode_responses=True, health_check_interval=30)
        except ValueError as exc:
            raise StoreError(f"invalid redis_url {_redact(url)}: {exc}") from exc
        self._errors = redis.RedisError

    def ping(self) -> None:
        try:
            self._client.ping()
        except self._errors as exc:
            raise StoreError(f"cannot reach {self.description}: {exc}") from exc

    def load(self, key: str) -> tuple[float, str] | None:
        try:
            entry = self._client.hmget(key, ["stored_at", "value"])
        except self._errors as exc:
            raise StoreError(f"reading {self.description}: {exc}") from exc
        if entry[0] is None or entry[1] is None:
            return None
        return float(entry[0]), entry[1]

    def save(self, key: str, value: str, stored_at: float) -> None:
        try:
            self._client.hset(key, mapping={"stored_at": repr(stored_at), "value": value})
        except self._errors as exc:
            raise StoreError(f"writing {self.description}: {exc}") from exc

    def close(self) -> None:
        self._client.close()


def _redact(url: str) -> str:
    """The URL without its password, for logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


def encode_outputs(value: Any) -> str:
    """A model output (a tuple of (rewrite, {tag: probability})) as compact JSON."""
    return json.dumps([[text, probs] for text, probs in value], ensure_ascii=False, separators=(",", ":"))


def decode_outputs(text: str) -> tuple:
    """The inverse of ``encode_outputs``; raises ValueError on anything else."""
    data = json.loads(text)
    if not isinstance(data, list) or not all(isinstance(row, list) and len(row) == 2 and isinstance(row[0], str) and isinstance(row[1], dict) for row in data):
        raise ValueError("not a list of [rewrite, probabilities]")
    return tuple((text, {str(k): float(v) for k, v in probs.items()}) for text, probs in data)


class PersistentCache:
    """The in-memory ``TTLCache`` in front of a persistent store, keyed by model hash and query.

    Same interface as ``TTLCache`` (the chain's ``RewriteCache`` protocol: ``get``, ``peek``,
    ``is_fresh``, ``put``, ``stats``), so the chain does not know which it has. The store's key is ``{namespace}:{query key}``, where the namespace names the
    model (its graph's sha256) and the number of rewrites asked for: outputs of another model or
    another request shape are never served. A store entry is fresh for ``persist_ttl_s`` (None:
    forever; greedy decoding of one model is deterministic, so a stored output is what the model
    would say again). A store that fails is logged and then acts as a miss; it never fails a request.
    """

    def __init__(self, memory: TTLCache, store: RewriteStore | None, namespace: str, *, persist_ttl_s: float | None = None,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.memory = memory
        self.store = store
        self.namespace = namespace
        self.persist_ttl_s = persist_ttl_s
        self._wall = wall_clock
        self.store_hits = self.store_misses = self.store_errors = 0
        self._last_error_log = 0.0

    @property
    def max_entries(self) -> int:
        return self.memory.max_entries

    @property
    def ttl_s(self) -> float:
        return self.memory.ttl_s

    def __len__(self) -> int:
        return len(self.memory)

    def _store_key(self, key: str) -> str:
        return f"{self.namespace}:{key}"

    def _failed(self, exc: Exception) -> None:
        self.store_errors += 1
        now = time.monotonic()
        if now - self._last_error_log > 10.0:  # one line per 10 s, not one per request
            self._last_error_log = now
            log.warning("rewrite cache store failed (%s); serving without it", exc)

    def _from_store(self, key: str) -> Hit | None:
        if self.store is None:
            return None
        try:
            found = self.store.load(self._store_key(key))
        except StoreError as exc:
            self._failed(exc)
            return None
        if found is None:
            self.store_misses += 1
            return None
        stored_at, text = found
        try:
            value = decode_outputs(text)
        except ValueError as exc:
            self._failed(StoreError(f"unreadable entry for {key!r}: {exc}"))
            return None
        self.store_hits += 1
        age = max(0.0, self._wall() - stored_at)
        fresh = self.persist_ttl_s is None or age < self.persist_ttl_s
        if fresh:
            self.memory.put(key, value)
        return Hit(value, fresh, age)

    def get(self, key: str) -> Hit | None:
        hit = self.memory.get(key)
        if hit is not None and hit.fresh:
            return hit
        stored = self._from_store(key)
        if stored is not None and (stored.fresh or hit is None):
            return stored
        return hit

    def is_fresh(self, key: str) -> bool:
        """A fresh entry in memory, or in the store (which then moves into memory)."""
        if self.memory.is_fresh(key):
            return True
        stored = self._from_store(key)
        return stored is not None and stored.fresh

    def fresh_hit(self, key: str) -> Any:
        """A fresh value counted as a hit (``is_fresh`` then ``get``), or None with nothing counted."""
        value = self.memory.fresh_hit(key)
        if value is not None or not self.is_fresh(key):
            return value
        hit = self.get(key)
        return hit.value if hit is not None and hit.fresh else None

    def peek(self, key: str) -> Any:
        """A fresh value (memory, else the store, which then moves into memory), or None."""
        value = self.memory.peek(key)
        if value is not None:
            return value
        stored = self._from_store(key)
        return stored.value if stored is not None and stored.fresh else None

    def put(self, key: str, value: Any) -> None:
        self.memory.put(key, value)
        if self.store is None:
            return
        try:
            self.store.save(self._store_key(key), encode_outputs(value), self._wall())
        except StoreError as exc:
            self._failed(exc)

    def stats(self) -> dict:
        out = self.memory.stats()
        if self.store is not None:
            out.update(store=self.store.description, store_hits=self.store_hits, store_misses=self.store_misses, store_errors=self.store_errors)
        return out

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
