import asyncio
import time
from dataclasses import dataclass, field
from uuid import uuid4

import pytest

from pytake_sender.adapters.db.permits import Lease, Release
from pytake_sender.domain.pair_limit import PairBucket
from pytake_sender.service.throughput import NumberGate, NumberPaused, PairLimits

ORG = uuid4()


@dataclass
class MemoryPool:
    """The permit table in memory: slot -> (holder, free_at)."""

    rate: int
    paused_for_s: float | None = None
    down: bool = False
    free_at: dict[int, float] = field(default_factory=dict)
    leases: int = 0

    def __post_init__(self) -> None:
        self.free_at = {slot: 0.0 for slot in range(self.rate)}

    async def lease(self, organization_id, phone_number_id, holder, want, ttl_s) -> Lease:  # type: ignore[no-untyped-def]
        if self.down:
            raise ConnectionError("database unreachable")
        self.leases += 1
        if self.paused_for_s:
            return Lease([], self.rate, self.paused_for_s, "spam")
        now = time.monotonic()
        free = [slot for slot, at in self.free_at.items() if at <= now][:want]
        for slot in free:
            self.free_at[slot] = now + ttl_s
        return Lease(free, self.rate, next_free_in_s=None if free else min(self.free_at.values()) - now)

    async def release(self, holder, releases) -> None:  # type: ignore[no-untyped-def]
        for release in releases:
            self.free_at[release.slot] = time.monotonic() + release.hold_s


def gate_for(pool: MemoryPool) -> NumberGate:
    return NumberGate(ORG, "100", pool, Release, "me", lease_s=5.0, ttl_s=20.0)


async def test_a_permit_is_reused_only_a_second_after_its_send() -> None:
    pool = MemoryPool(rate=2)
    gate = gate_for(pool)
    first, second = await gate.acquire(), await gate.acquire()
    gate.release(first)
    released_at = time.monotonic()
    gate.release(second)
    await gate.acquire()
    assert time.monotonic() - released_at >= 1.0 - 0.01
    await gate.close()


async def test_at_most_rate_sends_start_in_any_second() -> None:
    pool = MemoryPool(rate=5)
    gate = gate_for(pool)
    starts: list[float] = []

    async def send() -> None:
        permit = await gate.acquire()
        starts.append(time.monotonic())
        await asyncio.sleep(0.01)
        gate.release(permit)

    await asyncio.gather(*(send() for _ in range(12)))
    starts.sort()
    assert all(starts[i + 5] - starts[i] >= 1.0 for i in range(len(starts) - 5))
    await gate.close()


async def test_cooling_permits_do_not_hold_back_free_ones() -> None:
    pool = MemoryPool(rate=10)
    gate = gate_for(pool)
    first = [await gate.acquire() for _ in range(5)]
    for permit in first:
        gate.release(permit)  # each cools for a second: the pool still has five free
    second = await asyncio.gather(*(gate.acquire() for _ in range(5)))
    assert {p.slot for p in first}.isdisjoint(p.slot for p in second)
    assert gate.held == 10
    for permit in second:
        gate.release(permit)
    await gate.close()


async def test_a_paused_number_refuses_permits() -> None:
    gate = gate_for(MemoryPool(rate=3, paused_for_s=60.0))
    with pytest.raises(NumberPaused):
        await gate.acquire()
    with pytest.raises(NumberPaused):
        await gate.acquire()  # known locally now, no need to ask the pool


async def test_an_unreachable_pool_fails_the_waiters_instead_of_hanging() -> None:
    gate = gate_for(MemoryPool(rate=3, down=True))
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(gate.acquire(), 5.0)


async def test_permits_go_back_to_the_pool_on_close() -> None:
    pool = MemoryPool(rate=3)
    gate = gate_for(pool)
    gate.release(await gate.acquire())
    await gate.close()
    assert all(at <= time.monotonic() + 1.0 for at in pool.free_at.values())


def test_pair_bucket_allows_a_burst_then_one_per_interval() -> None:
    bucket = PairBucket.full(interval_s=6.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(6.0)
    assert bucket.take(12.0) == pytest.approx(0.0)


def test_pair_limits_are_per_recipient() -> None:
    now = [0.0]
    limits = PairLimits(interval_s=6.0, burst=1, clock=lambda: now[0])
    assert limits.delay(ORG, "100", "p:1") == 0.0
    assert limits.delay(ORG, "100", "p:1") == pytest.approx(6.0)
    assert limits.delay(ORG, "100", "p:2") == 0.0
