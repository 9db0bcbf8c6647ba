from __future__ import annotations

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .tables import OutboundDelivery


class DeliveryRepository:
    """Each call is its own short transaction: the Meta call must not hold one open."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def claim(self, organization_id: UUID, request_id: UUID, phone_number_id: str) -> str:
        """Register the request; returns its status (`sending` when it still needs sending)."""
        async with self._sessions() as session:
            await session.execute(
                insert(OutboundDelivery)
                .values(id=request_id, organization_id=organization_id, phone_number_id=phone_number_id,
                        status="sending", attempts=0)
                .on_conflict_do_nothing()
            )
            status = await session.scalar(
                select(OutboundDelivery.status).where(
                    OutboundDelivery.organization_id == organization_id, OutboundDelivery.id == request_id
                )
            )
            await session.commit()
            return str(status)

    async def finish(self, organization_id: UUID, request_id: UUID, *, status: str, attempts: int,
                     wamid: str | None = None, error_code: int | None = None) -> None:
        async with self._sessions() as session:
            row = await session.scalar(
                select(OutboundDelivery).where(
                    OutboundDelivery.organization_id == organization_id, OutboundDelivery.id == request_id
                )
            )
            assert row is not None
            row.status, row.attempts, row.wamid, row.error_code = status, attempts, wamid, error_code
            await session.commit()
