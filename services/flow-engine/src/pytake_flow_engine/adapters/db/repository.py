"""Data access for flows and conversations; every query filters on organization_id."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from .tables import Conversation, Flow, FlowVersion, InboundReceipt, OutboxRecord


class FlowRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def flow(self, organization_id: UUID, flow_id: UUID) -> Flow | None:
        return await self.session.scalar(
            select(Flow).where(Flow.organization_id == organization_id, Flow.id == flow_id, Flow.deleted_at.is_(None))
        )

    async def version(self, organization_id: UUID, flow_id: UUID, version: int) -> FlowVersion | None:
        return await self.session.scalar(
            select(FlowVersion).where(
                FlowVersion.organization_id == organization_id,
                FlowVersion.flow_id == flow_id,
                FlowVersion.version == version,
            )
        )

    async def latest_version(self, organization_id: UUID, flow_id: UUID) -> FlowVersion | None:
        return await self.session.scalar(
            select(FlowVersion)
            .where(FlowVersion.organization_id == organization_id, FlowVersion.flow_id == flow_id)
            .order_by(FlowVersion.version.desc())
            .limit(1)
        )

    async def next_version_number(self, organization_id: UUID, flow_id: UUID) -> int:
        current = await self.session.scalar(
            select(func.max(FlowVersion.version)).where(
                FlowVersion.organization_id == organization_id, FlowVersion.flow_id == flow_id
            )
        )
        return (current or 0) + 1

    def add(self, row: Flow | FlowVersion) -> None:
        self.session.add(row)


class ConversationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record_receipt(self, organization_id: UUID, wamid: str) -> bool:
        """False when this inbound message was processed before."""
        inserted = await self.session.scalar(
            insert(InboundReceipt)
            .values(organization_id=organization_id, wamid=wamid)
            .on_conflict_do_nothing()
            .returning(InboundReceipt.wamid)
        )
        return inserted is not None

    async def lock(self, organization_id: UUID, contact_key: str, flow_id: UUID) -> Conversation | None:
        return await self.session.scalar(
            select(Conversation)
            .where(
                Conversation.organization_id == organization_id,
                Conversation.contact_key == contact_key,
                Conversation.flow_id == flow_id,
            )
            .with_for_update()
        )

    async def get(self, organization_id: UUID, contact_key: str, flow_id: UUID) -> Conversation | None:
        return await self.session.scalar(
            select(Conversation).where(
                Conversation.organization_id == organization_id,
                Conversation.contact_key == contact_key,
                Conversation.flow_id == flow_id,
            )
        )

    def add(self, row: Conversation) -> None:
        self.session.add(row)


class OutboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, row: OutboxRecord) -> None:
        self.session.add(row)

    async def claim_pending(self, limit: int) -> list[OutboxRecord]:
        # Relay plumbing spans tenants by design: it publishes rows, it never shows them.
        result = await self.session.scalars(
            select(OutboxRecord)
            .where(OutboxRecord.published_at.is_(None))
            .order_by(OutboxRecord.seq)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(result)

    async def mark_published(self, ids: list[UUID], when: datetime) -> None:
        await self.session.execute(update(OutboxRecord).where(OutboxRecord.id.in_(ids)).values(published_at=when))
