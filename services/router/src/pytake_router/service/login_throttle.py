"""Login throttling: the policy of `domain.login_throttle` over a store every replica shares.

An attempt is admitted (and charged as a failure) in a short transaction of its own, committed
before the password is checked: the keys' rows stay locked from the moment they are read until
the charge is written, so concurrent attempts are counted one after the other and cannot all
pass. A refused attempt is rolled back: it neither extends a block nor leaves a row behind.
A successful login forgets the account's failures and gives back the address's charge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pytake_plumbing.logs import get_logger

from ..domain.login_throttle import ACCOUNT, LoginThrottlePolicy, TooManyAttempts, login_keys
from .ports import Transaction, UnitOfWork

log = get_logger(__name__)

# Stale rows removed per admitted attempt: more than an attempt can create, so rows stay bounded.
SWEEP_BATCH = 50


@dataclass(frozen=True)
class Admission:
    keys: list[str]


class LoginThrottle:
    def __init__(self, uow: Callable[[], UnitOfWork], policy: LoginThrottlePolicy | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._uow = uow
        self.policy = policy or LoginThrottlePolicy()
        self._clock = clock

    async def admit(self, email: str, address: str | None) -> Admission:
        """Charge the attempt to its keys, or raise TooManyAttempts (nothing charged)."""
        keys = login_keys(email, address)
        async with self._uow() as tx:
            states = {key: await tx.login_throttle.lock(key) for key in keys}
            # Read once the rows are ours: an attempt that waited for them decides after the one before.
            now = self._clock()
            wait_s = max(self.policy.rule_for(key).retry_after_s(state, now) for key, state in states.items())
            if wait_s > 0:
                log.info("login_throttled", retry_after_s=round(wait_s, 3))
                raise TooManyAttempts(wait_s)
            for key, state in states.items():
                await tx.login_throttle.save(key, self.policy.rule_for(key).charge(state, now))
            await tx.login_throttle.sweep(self.policy.idle_s, SWEEP_BATCH)
            await tx.commit()
        return Admission(keys)

    async def succeeded(self, tx: Transaction, admission: Admission) -> None:
        """In the login's own transaction: the account starts afresh, the address gets its charge back."""
        for key in admission.keys:
            if key.startswith(ACCOUNT):
                await tx.login_throttle.forget(key)
            else:
                refunded = self.policy.rule_for(key).refund(await tx.login_throttle.lock(key))
                await tx.login_throttle.save(key, refunded)
