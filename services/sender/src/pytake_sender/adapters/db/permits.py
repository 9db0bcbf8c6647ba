"""Each number's rate permits in PostgreSQL, leased in batches by every sender replica.

A number configured at N messages/s has N permit rows. A replica leases free ones
(`free_at <= now()`), marking them held for a time-to-live that outlasts anything it can
send with them; it hands them back with `free_at` set to when their last send's second
is over. Row locks with SKIP LOCKED keep replicas from taking the same permit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


@dataclass(frozen=True)
class Lease:
    slots: list[int]
    messages_per_second: int
    paused_for_s: float | None = None  # set while the number is paused
    pause_reason: str | None = None
    next_free_in_s: float | None = None  # when none was free: how soon one will be


@dataclass(frozen=True)
class Release:
    organization_id: UUID
    phone_number_id: str
    slot: int
    hold_s: float  # the permit's second is not over for this long yet


class PermitStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], default_rate: int, max_rate: int) -> None:
        self._sessions = sessions
        self._default_rate = default_rate
        self._max_rate = max_rate

    async def lease(self, organization_id: UUID, phone_number_id: str, holder: str, want: int,
                    ttl_s: float) -> Lease:
        number = {"org": organization_id, "num": phone_number_id}
        async with self._sessions() as session:
            limit = (await session.execute(text(
                "SELECT messages_per_second, permits, extract(epoch FROM paused_until - now()), pause_reason "
                "FROM number_limits WHERE organization_id = :org AND phone_number_id = :num"), number)).first()
            if limit is None:
                await self._create(session, organization_id, phone_number_id, self._default_rate)
                rate, paused_for, reason = self._default_rate, None, None
            else:
                rate, permits, paused_for, reason = limit
                if permits != rate:
                    await self._resize(session, organization_id, phone_number_id, rate)
            if paused_for is not None and paused_for > 0:
                await session.commit()
                return Lease([], rate, float(paused_for), reason)
            slots = list((await session.execute(text(
                "UPDATE rate_permits SET holder = :holder, free_at = now() + make_interval(secs => :ttl), "
                "updated_at = now() WHERE id IN (SELECT id FROM rate_permits WHERE organization_id = :org "
                "AND phone_number_id = :num AND slot < :rate AND free_at <= now() ORDER BY free_at "
                "LIMIT :want FOR UPDATE SKIP LOCKED) RETURNING slot"),
                {**number, "holder": holder, "ttl": ttl_s, "rate": rate, "want": want})).scalars())
            next_free = None
            if not slots:
                next_free = await session.scalar(text(
                    "SELECT greatest(0, extract(epoch FROM min(free_at) - now())) FROM rate_permits "
                    "WHERE organization_id = :org AND phone_number_id = :num AND slot < :rate"),
                    {**number, "rate": rate})
            await session.commit()
        return Lease(slots, rate, next_free_in_s=float(next_free) if next_free is not None else None)

    async def release(self, holder: str, releases: list[Release]) -> None:
        if not releases:
            return
        async with self._sessions() as session:
            await session.execute(text(
                "UPDATE rate_permits AS p SET holder = NULL, "
                "free_at = now() + make_interval(secs => greatest(r.hold, 0)), updated_at = now() "
                "FROM unnest(CAST(:orgs AS uuid[]), CAST(:nums AS text[]), CAST(:slots AS int[]), "
                "CAST(:holds AS float8[])) AS r(org, num, slot, hold) "
                "WHERE p.organization_id = r.org AND p.phone_number_id = r.num AND p.slot = r.slot "
                "AND p.holder = :holder"), {
                    "holder": holder, "orgs": [r.organization_id for r in releases],
                    "nums": [r.phone_number_id for r in releases], "slots": [r.slot for r in releases],
                    "holds": [r.hold_s for r in releases]})
            await session.commit()

    async def set_rate(self, organization_id: UUID, phone_number_id: str, messages_per_second: int) -> None:
        if not 1 <= messages_per_second <= self._max_rate:
            raise ValueError(f"messages per second must be between 1 and {self._max_rate}")
        async with self._sessions() as session:
            await self._create(session, organization_id, phone_number_id, messages_per_second)
            await session.execute(text(
                "UPDATE number_limits SET messages_per_second = :rate, updated_at = now() "
                "WHERE organization_id = :org AND phone_number_id = :num"),
                {"org": organization_id, "num": phone_number_id, "rate": messages_per_second})
            await self._resize(session, organization_id, phone_number_id, messages_per_second)
            await session.commit()

    async def pause(self, organization_id: UUID, phone_number_id: str, pause_s: float, reason: str) -> datetime:
        async with self._sessions() as session:
            await self._create(session, organization_id, phone_number_id, self._default_rate)
            until = await session.scalar(text(
                "UPDATE number_limits SET paused_until = now() + make_interval(secs => :pause), "
                "pause_reason = :reason, updated_at = now() WHERE organization_id = :org AND phone_number_id = :num "
                "RETURNING paused_until"),
                {"org": organization_id, "num": phone_number_id, "pause": pause_s, "reason": reason})
            await session.commit()
        return until

    async def resume(self, organization_id: UUID, phone_number_id: str) -> bool:
        async with self._sessions() as session:
            found = await session.scalar(text(
                "UPDATE number_limits SET paused_until = NULL, pause_reason = NULL, updated_at = now() "
                "WHERE organization_id = :org AND phone_number_id = :num RETURNING id"),
                {"org": organization_id, "num": phone_number_id})
            await session.commit()
        return found is not None

    async def _create(self, session: AsyncSession, organization_id: UUID, phone_number_id: str, rate: int) -> None:
        await session.execute(text(
            "INSERT INTO number_limits (id, organization_id, phone_number_id, messages_per_second, permits) "
            "VALUES (:id, :org, :num, :rate, 0) ON CONFLICT (organization_id, phone_number_id) DO NOTHING"),
            {"id": uuid4(), "org": organization_id, "num": phone_number_id, "rate": rate})
        await self._resize(session, organization_id, phone_number_id, None)

    async def _resize(self, session: AsyncSession, organization_id: UUID, phone_number_id: str,
                      rate: int | None) -> None:
        """Make the permit rows match the number's rate (extra slots are simply never leased)."""
        number = {"org": organization_id, "num": phone_number_id}
        if rate is None:
            rate = await session.scalar(text(
                "SELECT messages_per_second FROM number_limits WHERE organization_id = :org "
                "AND phone_number_id = :num FOR UPDATE"), number)
        await session.execute(text(
            "INSERT INTO rate_permits (id, organization_id, phone_number_id, slot, free_at) "
            "SELECT gen_random_uuid(), :org, :num, s, now() FROM generate_series(0, :rate - 1) AS s "
            "ON CONFLICT (organization_id, phone_number_id, slot) DO NOTHING"), {**number, "rate": rate})
        await session.execute(text(
            "UPDATE number_limits SET permits = :rate WHERE organization_id = :org AND phone_number_id = :num"),
            {**number, "rate": rate})
