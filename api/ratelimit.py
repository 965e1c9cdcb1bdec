"""Per-tenant submission rate limit: a token bucket per tenant, in this API process. Pure."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: A tenant's rate (tokens a second) and burst (bucket size).
Rate = tuple[float, int]


@dataclass
class _Bucket:
    tokens: float
    updated: float
    rate: Rate
    rate_read: float  # when ``rate`` was read (the clock's time)


class RateLimiter:
    """Token buckets keyed by tenant, refilled at the tenant's rate up to its burst.

    A tenant's rate is read (``rate_of``, which asks the store) when its bucket is made and
    then at most every ``rate_ttl_s``, so that a burst of submissions costs one read a second,
    not one each. ``forget_rate`` makes the next submission read it again: a change through this
    process applies at once, through another within ``rate_ttl_s``."""

    def __init__(
        self, rate_ttl_s: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._rate_ttl_s = rate_ttl_s
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str, rate_of: Callable[[], Rate]) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is available.
        ``rate_of`` is called outside the lock, only when the rate is not known or too old."""
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            fresh = bucket is not None and now - bucket.rate_read < self._rate_ttl_s
        if not fresh:
            rate = rate_of()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(float(rate[1]), now, rate, now)
            elif not fresh:
                bucket.rate, bucket.rate_read = rate, now
            per_s, burst = bucket.rate
            elapsed = max(0.0, now - bucket.updated)  # ``now`` was read before the lock
            bucket.tokens = min(float(burst), bucket.tokens + elapsed * per_s)
            bucket.updated = max(bucket.updated, now)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / per_s

    def forget_rate(self, key: str) -> None:
        """The tenant's rate changed: read it again at its next submission."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is not None:
                bucket.rate_read = float("-inf")
