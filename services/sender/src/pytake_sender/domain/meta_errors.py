"""Which of Meta's errors are worth another try."""

from __future__ import annotations

from dataclasses import dataclass

# Throttles and transient failures: back off and retry.
RETRYABLE_CODES = frozenset({
    4,        # app-level throttle
    80007,    # WABA rate limit
    130429,   # throughput limit of the number
    131056,   # pair rate limit (same recipient too often)
    131000,   # something went wrong (transient on Meta's side)
    131016,   # service unavailable
    133004,   # server temporarily unavailable
})
# Never retried blindly: 131048 (spam limit), 131047 (24-hour window closed),
# 131026 (undeliverable), 190 (token), 100 (bad parameter), and any other code.


@dataclass(frozen=True)
class MetaApiError(Exception):
    http_status: int
    code: int | None
    message: str

    @property
    def retryable(self) -> bool:
        if self.code is not None:
            return self.code in RETRYABLE_CODES
        return self.http_status >= 500 or self.http_status == 429

    def __str__(self) -> str:
        return f"Meta API error {self.code} (HTTP {self.http_status}): {self.message}"
