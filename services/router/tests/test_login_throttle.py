"""Login throttling: the backoff policy and the use case, on a clock the test moves (no servers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from uuid import uuid4

import pytest

from pytake_plumbing.auth import AuthSettings
from pytake_router.domain.errors import Unauthenticated
from pytake_router.domain.login_throttle import (
    BackoffRule,
    LoginThrottlePolicy,
    ThrottleState,
    TooManyAttempts,
    account_key,
    address_key,
    login_keys,
)
from pytake_router.service.accounts import Accounts
from pytake_router.service.login_throttle import LoginThrottle

T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
ACCOUNT = BackoffRule(max_failures=5, base_delay_s=1.0, max_delay_s=60.0, window_s=900.0)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# --- the policy ---------------------------------------------------------------------


def test_delay_doubles_after_the_allowed_failures_up_to_the_cap() -> None:
    assert [ACCOUNT.delay_s(n) for n in range(5)] == [0.0] * 5
    assert [ACCOUNT.delay_s(n) for n in range(5, 13)] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    # A long attack's count neither overflows nor lifts the cap.
    assert ACCOUNT.delay_s(10_000_000) == 60.0


def attempt(rule: BackoffRule, state: ThrottleState, now: datetime) -> tuple[ThrottleState, float]:
    """One attempt as the use case makes it: refused (state unchanged) or charged."""
    wait = rule.retry_after_s(state, now)
    return (state, wait) if wait else (rule.charge(state, now), 0.0)


def test_failures_beyond_the_allowance_wait_1_2_4_seconds_and_refusals_do_not_extend_the_block() -> None:
    state, now = ThrottleState(), T0
    for _ in range(5):
        state, wait = attempt(ACCOUNT, state, now)
        assert wait == 0
    assert state.failures == 5 and state.blocked_until == now + timedelta(seconds=1)
    # Hammering while blocked is refused and changes nothing.
    for _ in range(25):
        refused, wait = attempt(ACCOUNT, state, now + timedelta(seconds=0.5))
        assert refused == state and wait == pytest.approx(0.5)
    for expected in (2.0, 4.0, 8.0):
        now = state.blocked_until  # the moment the block ends, the next guess goes through …
        state, wait = attempt(ACCOUNT, state, now)
        assert wait == 0 and state.blocked_until == now + timedelta(seconds=expected)  # … and doubles the wait


def test_an_account_is_never_closed_for_longer_than_the_cap() -> None:
    state = ThrottleState(failures=500, last_failure_at=T0, blocked_until=None)
    state = ACCOUNT.charge(state, T0)
    assert ACCOUNT.retry_after_s(state, T0) == 60.0


def test_failures_are_forgotten_after_a_quiet_window() -> None:
    state = ThrottleState(failures=7, last_failure_at=T0, blocked_until=T0 + timedelta(seconds=4))
    assert ACCOUNT.charge(state, T0 + timedelta(seconds=899)).failures == 8
    assert ACCOUNT.charge(state, T0 + timedelta(seconds=900)).failures == 1


def test_a_refund_gives_back_one_charge_and_lifts_a_block_the_rest_no_longer_calls_for() -> None:
    charged = ACCOUNT.charge(ThrottleState(failures=4, last_failure_at=T0), T0)
    assert charged.blocked_until is not None
    assert ACCOUNT.refund(charged) == ThrottleState(failures=4, last_failure_at=T0, blocked_until=None)
    deep = ThrottleState(failures=9, last_failure_at=T0, blocked_until=T0 + timedelta(seconds=16))
    assert ACCOUNT.refund(deep) == ThrottleState(failures=8, last_failure_at=T0, blocked_until=deep.blocked_until)
    assert ACCOUNT.refund(ThrottleState()).failures == 0


def test_keys_name_no_email_and_group_what_one_client_holds() -> None:
    assert account_key("Ana@Example.TEST") == account_key("ana@example.test")
    assert "ana" not in account_key("ana@example.test") and len(account_key("x@y.z")) == len("account:") + 64
    assert address_key("203.0.113.9") == "address:203.0.113.9"
    assert address_key("::ffff:203.0.113.9") == "address:203.0.113.9"
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9") == "address:2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert login_keys("a@b.c", None) == [account_key("a@b.c")]
    assert login_keys("a@b.c", "10.0.0.1") == sorted([account_key("a@b.c"), "address:10.0.0.1"])


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert TooManyAttempts(0.2).retry_after_s == 1
    assert TooManyAttempts(1.0).retry_after_s == 1
    assert TooManyAttempts(59.01).retry_after_s == 60
    assert TooManyAttempts(0.2).status == 429


# --- the use case, on an in-memory store with transactions ---------------------------


@dataclass
class MemoryStore:
    rows: dict[str, ThrottleState] = field(default_factory=dict)


class StagedStore:
    """The store as one transaction sees it: its writes land only on commit."""

    def __init__(self, store: MemoryStore) -> None:
        self.store, self.rows = store, dict(store.rows)

    async def lock(self, key: str) -> ThrottleState:
        return self.rows.setdefault(key, ThrottleState())

    async def save(self, key: str, state: ThrottleState) -> None:
        self.rows[key] = state

    async def forget(self, key: str) -> None:
        self.rows.pop(key, None)

    async def sweep(self, idle_s: float, limit: int) -> int:
        return 0


class MemoryUow:
    def __init__(self, store: MemoryStore, users: dict[str, object] | None = None) -> None:
        self.store, self.users_by_email = store, users or {}
        self.added: list[object] = []

    async def __aenter__(self) -> MemoryUow:
        self.login_throttle = StagedStore(self.store)
        self.users = SimpleNamespace(by_email=self._by_email)
        self.refresh_tokens = SimpleNamespace(add=self.added.append)
        return self

    async def _by_email(self, email: str) -> object | None:
        return self.users_by_email.get(email)

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def commit(self) -> None:
        self.store.rows = dict(self.login_throttle.rows)


POLICY = LoginThrottlePolicy(account=ACCOUNT, address=BackoffRule(20, 1.0, 900.0, 3600.0))


async def test_the_use_case_counts_before_the_password_and_a_refusal_leaves_no_trace() -> None:
    store, clock = MemoryStore(), Clock()
    throttle = LoginThrottle(lambda: MemoryUow(store), POLICY, clock)
    for _ in range(5):
        await throttle.admit("victim@x.test", "198.51.100.1")
    account, address = account_key("victim@x.test"), address_key("198.51.100.1")
    assert store.rows[account].failures == 5 and store.rows[address].failures == 5
    before = dict(store.rows)
    with pytest.raises(TooManyAttempts) as refused:
        await throttle.admit("victim@x.test", "198.51.100.2")  # another address: the account is closed
    assert refused.value.retry_after_s == 1
    with pytest.raises(TooManyAttempts):
        await throttle.admit("VICTIM@x.test", None)
    assert store.rows == before
    clock.advance(1)
    await throttle.admit("victim@x.test", "198.51.100.2")
    assert store.rows[account].failures == 6


async def test_an_address_is_throttled_across_accounts_and_others_are_not() -> None:
    store, clock = MemoryStore(), Clock()
    throttle = LoginThrottle(lambda: MemoryUow(store), POLICY, clock)
    for n in range(20):
        await throttle.admit(f"nobody-{n}@x.test", "203.0.113.5")  # unknown emails count all the same
    with pytest.raises(TooManyAttempts):
        await throttle.admit("someone@x.test", "203.0.113.5")
    await throttle.admit("someone@x.test", "203.0.113.6")


class Passwords:
    def __init__(self) -> None:
        self.checked = 0

    async def verify(self, password_hash: str | None, password: str) -> bool:
        self.checked += 1
        return password_hash is not None and password == "right-password"

    async def hash(self, password: str) -> str:
        return password


async def test_login_refuses_a_throttled_account_without_checking_the_password_and_success_resets_it() -> None:
    store, clock, passwords = MemoryStore(), Clock(), Passwords()
    user = SimpleNamespace(id=uuid4(), organization_id=uuid4(), role="org_admin", active=True,
                           password_hash="stored")
    accounts = Accounts(lambda: MemoryUow(store, {"ana@x.test": user}), passwords,
                        AuthSettings.model_validate({"JWT_SECRET": "s" * 32}), clock,
                        throttle=LoginThrottle(lambda: MemoryUow(store, {"ana@x.test": user}), POLICY, clock))
    for _ in range(5):
        with pytest.raises(Unauthenticated):
            await accounts.login("ana@x.test", "wrong", "198.51.100.1")
    with pytest.raises(TooManyAttempts):
        await accounts.login("ana@x.test", "right-password", "198.51.100.7")
    assert passwords.checked == 5
    clock.advance(1)
    await accounts.login("ana@x.test", "right-password", "198.51.100.7")
    # The account starts afresh; the address that logged in got its charge back.
    assert account_key("ana@x.test") not in store.rows
    assert store.rows[address_key("198.51.100.7")].failures == 0
    assert store.rows[address_key("198.51.100.1")].failures == 5
