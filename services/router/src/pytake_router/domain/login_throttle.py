"""How fast anyone may guess passwords: pure policy, no I/O, the clock passed in.

Each login attempt is charged to keys: the account (`account:<sha256 of the lowercased email>`,
whether or not such a user exists) and the client address (`address:<ip>`, an IPv6 client by its
/64). A key that has failed `max_failures` times makes each further attempt wait an exponentially
growing delay (`base_delay_s`, doubled per failure, capped at `max_delay_s`). A refused attempt
changes nothing, so refusals never extend a block: a distributed attacker can keep an account
closed for at most `max_delay_s` at a time, and only by spending a real guess each time.
Failures are forgotten after `window_s` without one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from .errors import RegistryError


@dataclass(frozen=True)
class ThrottleState:
    """What is remembered of one key."""

    failures: int = 0
    last_failure_at: datetime | None = None
    blocked_until: datetime | None = None


@dataclass(frozen=True)
class BackoffRule:
    max_failures: int
    base_delay_s: float
    max_delay_s: float
    window_s: float

    def delay_s(self, failures: int) -> float:
        """How long after its latest failure a key with `failures` failures is closed."""
        if failures < self.max_failures:
            return 0.0
        # Capped exponent: the count of a long attack must not overflow a float.
        return min(self.base_delay_s * 2.0 ** min(failures - self.max_failures, 60), self.max_delay_s)

    def retry_after_s(self, state: ThrottleState, now: datetime) -> float:
        """0 when an attempt may go ahead now, else the seconds until it may."""
        if state.blocked_until is None or state.blocked_until <= now:
            return 0.0
        return (state.blocked_until - now).total_seconds()

    def current(self, state: ThrottleState, now: datetime) -> ThrottleState:
        """The state with failures older than the window forgotten."""
        if state.last_failure_at is None or (now - state.last_failure_at).total_seconds() >= self.window_s:
            return ThrottleState() if self.retry_after_s(state, now) == 0 else state
        return state

    def charge(self, state: ThrottleState, now: datetime) -> ThrottleState:
        """An admitted attempt, counted as a failure before the password is checked (so concurrent
        attempts cannot all slip in before any failure is recorded)."""
        failures = self.current(state, now).failures + 1
        delay = self.delay_s(failures)
        return ThrottleState(failures, now, now + timedelta(seconds=delay) if delay else None)

    def refund(self, state: ThrottleState) -> ThrottleState:
        """The attempt succeeded: its charge is given back. Earlier failures stay; a block stays
        only while the failures that remain still call for one."""
        failures = max(state.failures - 1, 0)
        if failures < self.max_failures:
            return replace(state, failures=failures, blocked_until=None)
        return replace(state, failures=failures)


@dataclass(frozen=True)
class LoginThrottlePolicy:
    # Per account: 5 free failures, then 1 s, 2 s, 4 s … at most a minute at a time.
    account: BackoffRule = field(default_factory=lambda: BackoffRule(5, 1.0, 60.0, 900.0))
    # Per client address: 20 free failures, then 1 s, 2 s, 4 s … at most 15 minutes.
    address: BackoffRule = field(default_factory=lambda: BackoffRule(20, 1.0, 900.0, 3600.0))

    def rule_for(self, key: str) -> BackoffRule:
        return self.account if key.startswith(ACCOUNT) else self.address

    @property
    def idle_s(self) -> float:
        """After this long untouched, a key's row holds nothing worth keeping."""
        return max(rule.window_s + rule.max_delay_s for rule in (self.account, self.address))


ACCOUNT = "account:"
ADDRESS = "address:"


def account_key(email: str) -> str:
    return ACCOUNT + hashlib.sha256(email.strip().lower().encode()).hexdigest()


def address_key(host: str) -> str:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return ADDRESS + host[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ADDRESS + str(ip.ipv4_mapped)
        # One subscriber usually holds a whole /64: counting single IPv6 addresses would be no limit.
        return ADDRESS + str(ipaddress.IPv6Network((ip, 64), strict=False))
    return ADDRESS + str(ip)


def login_keys(email: str, address: str | None) -> list[str]:
    """The keys one attempt is charged to, in the order their rows are locked (sorted: two
    attempts never wait on each other's rows in opposite orders)."""
    return sorted([account_key(email)] + ([address_key(address)] if address else []))


class TooManyAttempts(RegistryError):
    status = 429
    code = "too_many_requests"

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("too many login attempts; try again later")
        # Whole seconds, rounded up (the Retry-After header has no fractions), at least 1.
        self.retry_after_s = max(1, math.ceil(retry_after_s))
