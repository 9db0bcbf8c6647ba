"""Per-source token buckets: in-process, so each replica limits what it receives itself."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated_at: float


class TokenBucketLimiter:
    """`rate_per_s` requests per second per source, with bursts of up to `burst`.

    Only the `max_sources` most recently seen sources are tracked, so a flood of
    addresses cannot grow memory without bound; a forgotten source starts full.
    """

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float], max_sources: int = 10_000) -> None:
        self._rate = rate_per_s
        self._burst = float(max(burst, 1))
        self._clock = clock
        self._max_sources = max_sources
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self._rate > 0

    def allow(self, source: str) -> bool:
        if not self.enabled:
            return True
        now = self._clock()
        bucket = self._buckets.pop(source, None) or _Bucket(self._burst, now)
        bucket.tokens = min(self._burst, bucket.tokens + (now - bucket.updated_at) * self._rate)
        bucket.updated_at = now
        self._buckets[source] = bucket  # most recent last
        if len(self._buckets) > self._max_sources:
            self._buckets.popitem(last=False)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True
