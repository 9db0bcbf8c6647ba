"""Meta's pair limit: about one message every 6 s to the same user, bursts borrowing from later."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PairBucket:
    """Token bucket for one (number, recipient) pair; times are monotonic seconds."""

    interval_s: float
    burst: int
    tokens: float
    updated_at: float

    @classmethod
    def full(cls, interval_s: float, burst: int, now: float) -> PairBucket:
        return cls(interval_s, burst, float(burst), now)

    def take(self, now: float) -> float:
        """Take one message's worth; returns how long to wait before sending it (0 = now)."""
        self._refill(now)
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens * self.interval_s

    def is_full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst

    def _refill(self, now: float) -> None:
        if self.interval_s > 0:
            self.tokens = min(float(self.burst), self.tokens + (now - self.updated_at) / self.interval_s)
        else:
            self.tokens = float(self.burst)
        self.updated_at = now
