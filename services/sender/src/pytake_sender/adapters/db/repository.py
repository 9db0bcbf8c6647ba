"""Outbound deliveries: the record kept around each send so that none is sent twice.

Each call is its own short transaction (a Meta call never holds one open), and the hot
calls (claim, begin attempt, record the outcome) are batched across concurrent sends and
run straight on asyncpg, one round trip per batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID, uuid4

from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ...domain.delivery_status import moves_forward
from ..batching import Coalescer
from .direct import DirectPool
from .tables import OutboundDelivery

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

    async def join_status(self, organization_id: UUID, request_id: UUID | None, wamid: str,
                          status: str) -> StatusJoin | None:
        """Join a status webhook to the request it belongs to (by our callback id, else by wamid).
        Any status proves Meta accepted the message: an unresolved request becomes sent."""
        async with self._sessions() as session:
            match = OutboundDelivery.id == request_id if request_id else OutboundDelivery.wamid == wamid
            row = (await session.execute(
                OutboundDelivery.__table__.select()
                .where(OutboundDelivery.organization_id == organization_id, match)
                .with_for_update())).mappings().first()
            if row is None:
                return None
            changes: dict[str, object] = {}
            if row["status"] in UNRESOLVED:
                changes.update(status="sent", wamid=wamid, error_code=None, error_message=None)
            moved = moves_forward(row["delivery_status"], status)
            if moved:
                changes["delivery_status"] = status
            if changes:
                await session.execute(OutboundDelivery.__table__.update()
                                      .where(OutboundDelivery.id == row["id"]).values(**changes, updated_at=func.now()))
            await session.commit()
        return StatusJoin(request_id=row["id"], phone_number_id=row["phone_number_id"], recipient=row["recipient"],
                          conversation_id=row["conversation_id"], contact_key=row["contact_key"],
                          wamid=str(changes.get("wamid") or row["wamid"] or wamid), moved_forward=moved)

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

