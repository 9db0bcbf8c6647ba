"""Outbound deliveries: the record kept around each send so that none is sent twice.

Each call is its own short transaction (a Meta call never holds one open), and the hot
calls (claim, begin attempt, record the outcome) are batched across concurrent sends and
run straight on asyncpg, one round trip per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID, uuid4

from asyncpg import Record
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ...domain.delivery_status import apply_in_order
from ..batching import Coalescer
from .direct import DirectPool

UNRESOLVED = ("sending", "uncertain")

# The statements run around every send, each for a whole batch of concurrent sends.
CLAIM = """
INSERT INTO outbound_deliveries (id, organization_id, phone_number_id, status, attempts, claim_token,
                                 contact_key, recipient, conversation_id)
SELECT id, org, num, 'sending', 0, token, contact, recipient, conversation
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::uuid[])
     AS r(id, org, num, token, contact, recipient, conversation)
ON CONFLICT (id) DO NOTHING RETURNING id
"""
KNOWN = """
SELECT id, organization_id, status, claim_token, wamid, attempts, error_code, error_message,
       extract(epoch FROM now() - updated_at)::float8 AS age_s
FROM outbound_deliveries WHERE id = ANY($1::uuid[])
"""
BEGIN_ATTEMPT = """
UPDATE outbound_deliveries AS d SET attempts = a.attempt, updated_at = now()
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int[]) AS a(org, id, token, attempt)
WHERE d.id = a.id AND d.organization_id = a.org AND d.claim_token = a.token AND d.status = 'sending'
RETURNING d.id
"""
RECORD = """
UPDATE outbound_deliveries AS d SET status = o.status, attempts = o.attempts, wamid = o.wamid,
       error_code = o.error_code, error_message = o.error_message, updated_at = now()
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::int[], $6::text[], $7::int[], $8::text[])
     AS o(id, org, token, status, attempts, wamid, error_code, error_message)
WHERE d.id = o.id AND d.organization_id = o.org AND d.claim_token = o.token
  AND d.status IN ('sending', 'uncertain')
RETURNING d.id
"""
# Status joins, a batch at a time in one transaction: the deliveries the statuses name (by our
# callback id, else by wamid) are locked in id order, moved forward, and written back in one UPDATE.
LOCK_FOR_STATUSES = """
WITH named AS (
    SELECT d.id FROM unnest($1::uuid[], $2::uuid[]) AS s(org, id)
    JOIN outbound_deliveries d ON d.id = s.id AND d.organization_id = s.org
    UNION
    SELECT d.id FROM unnest($3::uuid[], $4::text[]) AS s(org, wamid)
    JOIN outbound_deliveries d ON d.wamid = s.wamid AND d.organization_id = s.org
)
SELECT id, organization_id, phone_number_id, recipient, conversation_id, contact_key, wamid, status,
       delivery_status
FROM outbound_deliveries WHERE id IN (SELECT id FROM named) ORDER BY id FOR UPDATE
"""
APPLY_STATUSES = """
UPDATE outbound_deliveries AS d
SET status = u.status, wamid = u.wamid, delivery_status = u.delivery_status, updated_at = now(),
    error_code = CASE WHEN u.resolved THEN NULL ELSE d.error_code END,
    error_message = CASE WHEN u.resolved THEN NULL ELSE d.error_message END
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bool[]) AS u(id, status, wamid, delivery_status, resolved)
WHERE d.id = u.id
"""


@dataclass(frozen=True)
class StatusSeen:
    """A status webhook, as far as the join needs it."""

    organization_id: UUID
    request_id: UUID | None  # from our callback data, when Meta echoed it
    wamid: str
    status: str


@dataclass(frozen=True)
class ClaimRequest:
    organization_id: UUID
    request_id: UUID
    phone_number_id: str
    contact_key: str
    recipient: str
    conversation_id: UUID | None


@dataclass(frozen=True)
class Delivery:
    """A request's record. `status` is `new` when this call created it."""

    status: str
    claim_token: UUID | None
    wamid: str | None = None
    attempts: int = 0
    error_code: int | None = None
    error_message: str | None = None
    age_s: float = 0.0  # since the record last changed


@dataclass(frozen=True)
class Outcome:
    organization_id: UUID
    request_id: UUID
    claim_token: UUID
    status: str  # uncertain | sent | failed
    attempts: int
    wamid: str | None = None
    error_code: int | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class StatusJoin:
    request_id: UUID
    phone_number_id: str
    recipient: str | None
    conversation_id: UUID | None
    contact_key: str | None
    wamid: str
    moved_forward: bool


class DeliveryRepository:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], direct: DirectPool) -> None:
        self._sessions = sessions
        self._direct = direct  # for the per-send statements
        self._claims: Coalescer[ClaimRequest, Delivery] = Coalescer(self._claim_batch)
        self._outcomes: Coalescer[Outcome, bool] = Coalescer(self._record_batch)
        self._attempts: Coalescer[tuple[UUID, UUID, UUID, int], bool] = Coalescer(self._attempt_batch)

    async def claim(self, request: ClaimRequest) -> Delivery:
        """Register the request, or return its record when it is known already."""
        return await self._claims.submit(request)

    async def record(self, outcome: Outcome) -> bool:
        """Store an outcome if `claim_token` still owns the unresolved request; True when stored."""
        return await self._outcomes.submit(outcome)

    async def begin_attempt(self, organization_id: UUID, request_id: UUID, claim_token: UUID, attempt: int) -> bool:
        """Note that attempt `attempt` is about to go out, if `claim_token` still owns the request.
        A record with no attempt begun was never sent: whoever reads it next may send at once."""
        return await self._attempts.submit((organization_id, request_id, claim_token, attempt))

    async def get(self, organization_id: UUID, request_id: UUID) -> Delivery | None:
        async with self._sessions() as session:
            row = (await session.execute(text(
                "SELECT status, claim_token, wamid, attempts, error_code, error_message, "
                "extract(epoch FROM now() - updated_at) AS age_s FROM outbound_deliveries "
                "WHERE organization_id = :org AND id = :id"), {"org": organization_id, "id": request_id})).first()
        return _delivery(row) if row else None

    async def take_over(self, organization_id: UUID, request_id: UUID, expected_token: UUID | None) -> UUID | None:
        """Become the sender of an unresolved request (if nobody else did meanwhile)."""
        token = uuid4()
        async with self._sessions() as session:
            taken = await session.scalar(text(
                "UPDATE outbound_deliveries SET claim_token = :new, status = 'sending', updated_at = now() "
                "WHERE organization_id = :org AND id = :id AND status IN ('sending', 'uncertain') "
                "AND claim_token IS NOT DISTINCT FROM :old RETURNING id"),
                {"new": token, "org": organization_id, "id": request_id, "old": expected_token})
            await session.commit()
        return token if taken else None

    async def join_statuses(self, statuses: Sequence[StatusSeen]) -> list[StatusJoin | None]:
        """Join status webhooks, in order, to the requests they belong to (None: no such request of
        that organization). Any status proves Meta accepted the message: an unresolved request
        becomes sent. Each status moves its delivery forward at most once."""
        by_id = [s for s in statuses if s.request_id]
        by_wamid = [s for s in statuses if not s.request_id]
        async with self._direct.transaction() as connection:
            rows = await connection.fetch(LOCK_FOR_STATUSES,
                                          [s.organization_id for s in by_id], [s.request_id for s in by_id],
                                          [s.organization_id for s in by_wamid], [s.wamid for s in by_wamid])
            ids = {(row["organization_id"], row["id"]): row for row in rows}
            wamids: dict[tuple[UUID, str], Record] = {}
            for row in rows:
                wamids.setdefault((row["organization_id"], row["wamid"]), row)
            matched = [ids.get((s.organization_id, s.request_id)) if s.request_id
                       else wamids.get((s.organization_id, s.wamid)) for s in statuses]
            joins: list[StatusJoin | None] = [None] * len(statuses)
            changes = []
            of_delivery: dict[UUID, list[int]] = {}
            for i, row in enumerate(matched):
                if row is not None:
                    of_delivery.setdefault(row["id"], []).append(i)
            for mine in of_delivery.values():
                row = matched[mine[0]]
                latest, moved = apply_in_order(row["delivery_status"], [statuses[i].status for i in mine])
                resolved = row["status"] in UNRESOLVED
                wamid = statuses[mine[0]].wamid if resolved else row["wamid"] or statuses[mine[0]].wamid
                if resolved or latest != row["delivery_status"]:
                    changes.append((row["id"], "sent" if resolved else row["status"], wamid, latest, resolved))
                for i, forward in zip(mine, moved, strict=True):
                    joins[i] = StatusJoin(request_id=row["id"], phone_number_id=row["phone_number_id"],
                                          recipient=row["recipient"], conversation_id=row["conversation_id"],
                                          contact_key=row["contact_key"], wamid=wamid, moved_forward=forward)
            if changes:
                await connection.execute(APPLY_STATUSES, *(list(column) for column in zip(*changes, strict=True)))
        return joins

    async def _claim_batch(self, requests: Sequence[ClaimRequest]) -> list[Delivery]:
        tokens = [uuid4() for _ in requests]
        # unnest keeps the statement the same whatever the batch size (prepared once).
        inserted = {row[0] for row in await self._direct.fetch(CLAIM,
            [r.request_id for r in requests], [r.organization_id for r in requests],
            [r.phone_number_id for r in requests], tokens, [r.contact_key for r in requests],
            [r.recipient for r in requests], [r.conversation_id for r in requests])}
        known = [r.request_id for r in requests if r.request_id not in inserted]
        # A statement of its own: it must see rows another replica committed after the INSERT began.
        existing = {row[0]: row for row in await self._direct.fetch(KNOWN, known)} if known else {}
        results = []
        for request, token in zip(requests, tokens, strict=True):
            row = existing.get(request.request_id)
            if request.request_id in inserted:
                results.append(Delivery(status="new", claim_token=token))
            elif row is None or row[1] != request.organization_id:
                results.append(Delivery(status="foreign", claim_token=None))  # another tenant's id
            else:
                results.append(_delivery(tuple(row)[2:]))
        return results

    async def _record_batch(self, outcomes: Sequence[Outcome]) -> list[bool]:
        stored = {row[0] for row in await self._direct.fetch(RECORD,
            [o.request_id for o in outcomes], [o.organization_id for o in outcomes],
            [o.claim_token for o in outcomes], [o.status for o in outcomes], [o.attempts for o in outcomes],
            [o.wamid for o in outcomes], [o.error_code for o in outcomes], [o.error_message for o in outcomes])}
        return [o.request_id in stored for o in outcomes]

    async def _attempt_batch(self, attempts: Sequence[tuple[UUID, UUID, UUID, int]]) -> list[bool]:
        begun = {row[0] for row in await self._direct.fetch(BEGIN_ATTEMPT,
            [a[0] for a in attempts], [a[1] for a in attempts], [a[2] for a in attempts],
            [a[3] for a in attempts])}
        return [a[1] in begun for a in attempts]


def _delivery(row: Sequence[object]) -> Delivery:
    status, token, wamid, attempts, code, message, age = row
    return Delivery(status=str(status), claim_token=token, wamid=wamid, attempts=int(attempts or 0),  # type: ignore[arg-type]
                    error_code=code, error_message=message, age_s=float(age or 0.0))  # type: ignore[arg-type]

