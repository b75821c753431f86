"""Per-merchant token buckets: `rate_per_s` sustained, bursts of twice that.

In memory, per process: with N API processes a merchant gets up to N times the rate. That is
the documented trade-off for not needing Redis in the embedded default.
"""

from __future__ import annotations

import math
import threading
import time


class RateLimiter:
    BUCKETS_MAX = 100_000  # bound memory: a bucket that is full again carries no information

    def __init__(self, rate_per_s: float, burst_factor: float = 2.0, monotonic=time.monotonic):
        self.rate_per_s = rate_per_s
        self.capacity = max(1.0, rate_per_s * burst_factor)
        self._monotonic = monotonic
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str) -> float:
        """0 when the request may proceed, else the seconds to wait before retrying."""
        if self.rate_per_s <= 0:
            return 0.0
        now = self._monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate_per_s)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > self.BUCKETS_MAX:
                self._buckets.clear()
            return (1.0 - tokens) / self.rate_per_s

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))
