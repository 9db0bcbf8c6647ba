"""The one retry delay of every PyTake loop: exponential, capped, with full jitter, so that replicas
retrying the same outage do not all come back at the same instant."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base_s: float = 0.1
    max_s: float = 5.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (1 for the first retry)."""
        ceiling = min(self.max_s, self.base_s * 2 ** min(max(attempt, 1) - 1, 30))
        return random.uniform(0, ceiling)


# Consumers and relays waiting out a dependency's outage, or retrying a failing record.
OUTAGE = Backoff()
