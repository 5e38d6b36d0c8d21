"""Rate-limited logging: a fault must not turn into thousands of identical warnings.

Why: one broken model file produced 5,939 warnings in 45 s (one per request), which drowns the
line that explains the fault and costs the proxy time. ``RateLimitFilter`` lets through the first
``burst`` records of each kind (same logger, level and message template) per ``interval_s``, drops
the rest, and appends to the next record of that kind that passes how many were suppressed. Every
suppressed line is counted (``suppressed``, and the proxy's ``qrw_log_lines_suppressed_total``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

QRW_LOGGERS = ("qrw.plugin", "qrw.plugin.runtime", "qrw.proxy")


class RateLimitFilter(logging.Filter):
    def __init__(self, interval_s: float = 10.0, burst: int = 5, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.burst = burst
        self.clock = clock
        self.suppressed = 0
        """Lines dropped since start, all kinds together."""
        self.on_suppressed: Callable[[], None] | None = None
        self._state: dict[tuple, list] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            state = self._state.get(key)
            if state is None:
                if len(self._state) > 10_000:  # bounded memory even for messages built without templates
                    self._state.clear()
                state = self._state[key] = [now, 0, 0]  # window start, passed in window, suppressed in window
            if now - state[0] >= self.interval_s:
                if state[2]:
                    record.msg = f"{record.getMessage()} [{state[2]} similar lines suppressed in the last {now - state[0]:.0f}s]"
                    record.args = ()
                state[0], state[1], state[2] = now, 0, 0
            if state[1] < self.burst:
                state[1] += 1
                return True
            state[2] += 1
            self.suppressed += 1
        if self.on_suppressed is not None:
            self.on_suppressed()
        return False


_installed: RateLimitFilter | None = None
_install_lock = threading.Lock()


def install(names: Iterable[str] = QRW_LOGGERS, interval_s: float = 10.0, burst: int = 5) -> RateLimitFilter:
    """Attach one shared filter to the serving loggers (idempotent); returns it."""
    global _installed
    with _install_lock:
        if _installed is None:
            _installed = RateLimitFilter(interval_s, burst)
        for name in names:
            logger = logging.getLogger(name)
            if _installed not in logger.filters:
                logger.addFilter(_installed)
        return _installed
