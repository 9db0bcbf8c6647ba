"""Rate limits: a number's throughput (shared by every replica) and Meta's pair limit.

Throughput is a counting semaphore with `messages_per_second` permits per number, held by a
send from just before its request until one second after its answer. At any instant at most
N permits are held, and every request Meta receives in a window [t, t+1) belongs to a send
whose permit was held at t+1-ε, so Meta never sees more than N in any second, whatever the
latency or jitter. The permits live in PostgreSQL (adapters/db/permits.py); each replica
leases them in batches and reuses them locally while it has work, so the database sees a
few statements a second per number, not one per message.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from pytake_plumbing.logs import get_logger

from ..domain.pair_limit import PairBucket

log = get_logger(__name__)

WINDOW_S = 1.0  # Meta counts messages per second
IDLE_KEEP_S = 0.5  # a permit nobody waits for goes back to the pool after this
MAX_POLL_S = 0.25  # how often a starved gate asks the pool again


class NumberPaused(Exception):
    def __init__(self, paused_for_s: float, reason: str | None) -> None:
        super().__init__(f"sending from this number is paused ({reason or 'paused by an operator'})")
        self.paused_for_s = paused_for_s
        self.reason = reason


class LeaseResult(Protocol):
    slots: list[int]
    paused_for_s: float | None
    pause_reason: str | None
    next_free_in_s: float | None


class PermitPool(Protocol):
    async def lease(self, organization_id: UUID, phone_number_id: str, holder: str, want: int,
                    ttl_s: float) -> LeaseResult: ...
    async def release(self, holder: str, releases: list) -> None: ...  # type: ignore[type-arg]


ReleaseFactory = Callable[[UUID, str, int, float], object]


@dataclass(eq=False)
class Permit:
    slot: int
    usable_until: float  # no send may start with it after this (monotonic seconds)
    ready_at: float = 0.0  # when its last send's second is over


@dataclass(order=True)
class _Cooling:
    ready_at: float
    order: int
    permit: Permit = field(compare=False)


class NumberGate:
    """This replica's share of one number's permits."""

    def __init__(self, organization_id: UUID, phone_number_id: str, pool: PermitPool, make_release: ReleaseFactory,
                 holder: str, lease_s: float, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.organization_id = organization_id
        self.phone_number_id = phone_number_id
        self._pool = pool
        self._make_release = make_release
        self._holder = holder
        self._lease_s = lease_s
        self._ttl_s = ttl_s
        self._clock = clock
        self._ready: deque[Permit] = deque()
        self._cooling: list[_Cooling] = []
        self._order = itertools.count()
        self._busy = 0
        self._waiters: deque[asyncio.Future[Permit]] = deque()
        self._wakeup = asyncio.Event()
        self._sleep_until = float("inf")
        self._pump: asyncio.Task[None] | None = None
        self._paused_until = 0.0
        self._pause_reason: str | None = None
        self._expired: list[Permit] = []
        self._maintained_at = 0.0
        self._lease_again_at = 0.0  # after the pool had no permit free, not before this

    @property
    def held(self) -> int:
        return len(self._ready) + len(self._cooling) + self._busy

    async def acquire(self) -> Permit:
        # While the number is known paused, every request asks the pool (an operator may have
        # resumed it); paused numbers are rare and their requests fail fast anyway.
        if not self._waiters and self._paused_until <= self._clock():  # fast path: a ready permit
            now = self._clock()
            self._cool(now)
            while self._ready:
                permit = self._ready.popleft()
                if permit.usable_until > now:
                    self._busy += 1
                    return permit
                self._expired.append(permit)
                self._kick()
        future: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._kick()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release(future.result(), used=False)
            raise

    def release(self, permit: Permit, *, used: bool = True) -> None:
        """Give a permit back after its send's answer (or failure); it cools for one second."""
        self._busy -= 1
        now = self._clock()
        if used:
            permit.ready_at = now + WINDOW_S
        heapq.heappush(self._cooling, _Cooling(permit.ready_at, next(self._order), permit))
        if permit.ready_at < self._sleep_until:
            self._kick()

    def pause(self, paused_for_s: float, reason: str | None) -> None:
        """Stop handing out permits; the pool (where the pause is recorded) has the last word."""
        self._paused_until = self._clock() + paused_for_s
        self._pause_reason = reason

    async def close(self) -> None:
        if self._pump:
            self._pump.cancel()
            try:
                await self._pump
            except asyncio.CancelledError:
                pass
        now = self._clock()
        held = [*self._ready, *(c.permit for c in self._cooling), *self._expired]
        self._expired.clear()
        self._ready.clear()
        self._cooling.clear()
        await self._give_back(held, now)

    def _kick(self) -> None:
        self._wakeup.set()
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            now = self._clock()
            retry_in = None
            try:
                if self._paused_until > now and self._waiters:
                    await self._lease(len(self._waiters))  # still paused? (fails the waiters if so)
                self._cool(now)
                if self._paused_until <= now:
                    self._hand_out(now)
                if now - self._maintained_at >= MAX_POLL_S:
                    self._maintained_at = now
                    self._expired += self._idle_permits(now)
                expired, self._expired = self._expired, []
                await self._give_back(expired, now)
                # Cooling permits are not counted as supply: each is a second away, and a number
                # at N/s needs about N of them cooling at once. Waiters are served by fresh
                # permits while there are any; when the pool had none, it is asked again only
                # after a while, and cooled permits serve the waiters meanwhile.
                demand = len(self._waiters) - len(self._ready)
                if demand > 0 and self._paused_until <= self._clock():
                    wait_s = self._lease_again_at - self._clock()
                    if wait_s > 0:
                        retry_in = wait_s
                    else:
                        retry_in = await self._lease(demand)
                        if retry_in is None:
                            continue  # got permits: hand them out
                        self._lease_again_at = self._clock() + retry_in
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the pool is unreachable: the waiting sends retry later
                log.warning("rate_permits_unavailable", error=repr(exc)[:300])
                self._fail_waiters(ConnectionError(f"rate permits unavailable: {exc!r}"[:300]))
                retry_in = MAX_POLL_S
            if not (self._waiters or self._ready or self._cooling or self._expired or self._busy):
                return
            await self._sleep(now, retry_in)

    def _cool(self, now: float) -> None:
        while self._cooling and self._cooling[0].ready_at <= now:
            self._ready.append(heapq.heappop(self._cooling).permit)

    def _hand_out(self, now: float) -> None:
        """Ready permits go to waiters, first come first served."""
        while self._waiters and self._ready:
            permit = self._ready.popleft()
            if permit.usable_until <= now:
                self._expired.append(permit)
                continue
            waiter = self._waiters.popleft()
            if waiter.done():
                self._ready.appendleft(permit)
                continue
            self._busy += 1
            waiter.set_result(permit)
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()

    def _idle_permits(self, now: float) -> list[Permit]:
        """Permits past their lease, or unused for a while: other replicas may need them."""
        keep: deque[Permit] = deque()
        idle = []
        for permit in self._ready:
            if permit.usable_until <= now or (not self._waiters and permit.ready_at + IDLE_KEEP_S <= now):
                idle.append(permit)
            else:
                keep.append(permit)
        self._ready = keep
        if any(c.permit.usable_until <= now for c in self._cooling):
            still = [c for c in self._cooling if c.permit.usable_until > now]
            idle += [c.permit for c in self._cooling if c.permit.usable_until <= now]
            heapq.heapify(still)
            self._cooling = still
        return idle

    async def _give_back(self, permits: list[Permit], now: float) -> None:
        if not permits:
            return
        await self._pool.release(self._holder, [
            self._make_release(self.organization_id, self.phone_number_id, p.slot, max(0.0, p.ready_at - now))
            for p in permits])

    async def _lease(self, demand: int) -> float | None:
        """Lease permits from the pool; returns None when some came, else how long to wait."""
        asked_at = self._clock()
        lease = await self._pool.lease(self.organization_id, self.phone_number_id, self._holder, demand, self._ttl_s)
        if lease.paused_for_s:
            self.pause(lease.paused_for_s, lease.pause_reason)
            self._fail_waiters(NumberPaused(lease.paused_for_s, lease.pause_reason))
            return None
        self._paused_until = 0.0
        if not lease.slots:
            return min(MAX_POLL_S, max(0.01, lease.next_free_in_s or MAX_POLL_S))
        # The lease's clock starts before the request went out: never later than the pool's.
        usable_until = asked_at + self._lease_s
        self._ready.extend(Permit(slot, usable_until) for slot in lease.slots)
        return None

    async def _sleep(self, now: float, retry_in: float | None) -> None:
        deadlines = [now + MAX_POLL_S * 4]
        if retry_in is not None:
            deadlines.append(now + retry_in)
        if self._cooling:
            deadlines.append(self._cooling[0].ready_at)
        if self._ready and not self._waiters:
            deadlines.append(now + MAX_POLL_S)
        self._sleep_until = min(deadlines)
        try:
            await asyncio.wait_for(self._wakeup.wait(), max(0.0, self._sleep_until - self._clock()))
        except TimeoutError:
            pass
        finally:
            self._sleep_until = float("inf")

    def _fail_waiters(self, error: Exception) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)


class Throughput:
    """Every number's gate in this process."""

    def __init__(self, pool: PermitPool, make_release: ReleaseFactory, holder: str, lease_s: float,
                 ttl_s: float) -> None:
        self._pool = pool
        self._make_release = make_release
        self._holder = holder
        self._lease_s = lease_s
        self._ttl_s = ttl_s
        self._gates: dict[tuple[UUID, str], NumberGate] = {}

    def gate(self, organization_id: UUID, phone_number_id: str) -> NumberGate:
        key = (organization_id, phone_number_id)
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = NumberGate(organization_id, phone_number_id, self._pool, self._make_release,
                                                 self._holder, self._lease_s, self._ttl_s)
        return gate

    async def close(self) -> None:
        for gate in self._gates.values():
            try:
                await gate.close()
            except Exception as exc:  # the leases expire on their own
                log.warning("permits_not_returned", error=repr(exc)[:300])


class PairLimits:
    """Meta's pair limit, kept by this process: a conversation's messages are all handled by
    the replica that owns its partition, so its (number, recipient) pair is never shared."""

    def __init__(self, interval_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._burst = burst
        self._clock = clock
        self._buckets: dict[tuple[UUID, str, str], PairBucket] = {}

    def delay(self, organization_id: UUID, phone_number_id: str, contact_key: str) -> float:
        """Seconds to wait before the next message to this recipient (0 = now)."""
        now = self._clock()
        key = (organization_id, phone_number_id, contact_key)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= 100_000:
                self._forget_full(now)
            bucket = self._buckets[key] = PairBucket.full(self._interval_s, self._burst, now)
        return bucket.take(now)

    def _forget_full(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items() if b.is_full(now)]:
            del self._buckets[key]
