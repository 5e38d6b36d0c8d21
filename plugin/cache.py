"""A thread-safe LRU cache with a time-to-live whose expired entries stay usable as a fallback.

Why stale entries are kept: the fallback ladder is "fresh model output, else what we cached before,
else the original query". An entry past its TTL is refreshed when the model answers in time; when it
does not, yesterday's rewrites are better than none. Entries leave only by LRU eviction.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

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
