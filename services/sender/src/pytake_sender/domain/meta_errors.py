"""What each of Meta's errors means for the sender: retry, fall back, pause, or give up."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class ErrorKind(Enum):
    RETRY = "retry"                  # throttles and transient failures: back off, try again
    WINDOW_CLOSED = "window_closed"  # 131047: the flow engine falls back to a template
    SPAM_LIMITED = "spam_limited"    # 131048: stop sending from the number, alert
    INVALID = "invalid"              # the request itself is wrong: dead-letter with the reason
    FAILED = "failed"                # anything else: report and give up


# Throttles and transient failures.
RETRYABLE_CODES = frozenset({
    4,        # app-level throttle
    80007,    # WABA rate limit
    130429,   # throughput limit of the number
    131056,   # pair rate limit (same recipient too often)
    131000,   # something went wrong (transient on Meta's side)
    131016,   # service unavailable
    133004,   # server temporarily unavailable
})
WINDOW_CLOSED = 131047
SPAM_LIMITED = 131048
# The request is malformed: sending it again can never work.
INVALID_PARAMETER_CODES = frozenset({
    100,      # invalid parameter
    131008,   # required parameter missing
    131009,   # parameter value invalid
    131051,   # unsupported message type
    132000,   # template: wrong number of parameters
    132001,   # template does not exist
    132005,   # template: hydrated text too long
    132007,   # template: format character policy violated
    132012,   # template: parameter format mismatch
    135000,   # generic user error
})


@dataclass(frozen=True)
class MetaApiError(Exception):
    http_status: int
    code: int | None
    message: str

    @property
    def kind(self) -> ErrorKind:
        if self.code is None:
            return ErrorKind.RETRY if self.http_status >= 500 or self.http_status == 429 else ErrorKind.FAILED
        if self.code in RETRYABLE_CODES:
            return ErrorKind.RETRY
        if self.code == WINDOW_CLOSED:
            return ErrorKind.WINDOW_CLOSED
        if self.code == SPAM_LIMITED:
            return ErrorKind.SPAM_LIMITED
        if self.code in INVALID_PARAMETER_CODES:
            return ErrorKind.INVALID
        return ErrorKind.RETRY if self.http_status >= 500 else ErrorKind.FAILED

    @property
    def retryable(self) -> bool:
        return self.kind is ErrorKind.RETRY

    def __str__(self) -> str:
        return f"Meta API error {self.code} (HTTP {self.http_status}): {self.message}"


class AmbiguousSend(Exception):
    """The request may have reached Meta but no answer came back (read timeout, dropped
    connection): sending it again could deliver the message twice."""
