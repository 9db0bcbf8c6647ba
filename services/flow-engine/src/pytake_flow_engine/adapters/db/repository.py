"""Data access for flows and conversations; every tenant query filters on organization_id."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, insert as core_insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from .tables import Conversation, Flow, FlowVersion, InboundReceipt, OutboxRecord

ConversationKey = tuple[UUID, str, UUID]  # (organization, contact key, routed flow)


class FlowRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def flow(self, organization_id: UUID, flow_id: UUID, *, lock: bool = False) -> Flow | None:
        query = select(Flow).where(Flow.organization_id == organization_id, Flow.id == flow_id,
                                   Flow.deleted_at.is_(None))
        return await self.session.scalar(query.with_for_update() if lock else query)

    async def any_flow(self, flow_id: UUID) -> Flow | None:
        """Including deleted ones and other tenants': only to refuse reusing an id."""
        return await self.session.get(Flow, flow_id)

    async def flows(self, organization_id: UUID, limit: int, offset: int) -> list[Flow]:
        result = await self.session.scalars(
            select(Flow).where(Flow.organization_id == organization_id, Flow.deleted_at.is_(None))
            .order_by(Flow.created_at, Flow.id).limit(limit).offset(offset))
        return list(result)

    async def version(self, organization_id: UUID, flow_id: UUID, version: int) -> FlowVersion | None:
        return await self.session.scalar(
            select(FlowVersion).where(
                FlowVersion.organization_id == organization_id,
                FlowVersion.flow_id == flow_id,
                FlowVersion.version == version,
            )
        )

    async def versions(self, organization_id: UUID, flow_id: UUID) -> list[FlowVersion]:
        result = await self.session.scalars(
            select(FlowVersion).where(FlowVersion.organization_id == organization_id, FlowVersion.flow_id == flow_id)
            .order_by(FlowVersion.version))
        return list(result)

    async def latest_version(self, organization_id: UUID, flow_id: UUID) -> FlowVersion | None:
        return await self.session.scalar(
            select(FlowVersion)
            .where(FlowVersion.organization_id == organization_id, FlowVersion.flow_id == flow_id)
            .order_by(FlowVersion.version.desc())
            .limit(1)
        )

    async def latest_version_number(self, organization_id: UUID, flow_id: UUID) -> int | None:
        return await self.session.scalar(
            select(func.max(FlowVersion.version)).join(Flow, Flow.id == FlowVersion.flow_id).where(
                FlowVersion.organization_id == organization_id, FlowVersion.flow_id == flow_id,
                Flow.organization_id == organization_id, Flow.deleted_at.is_(None)))

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
        return bool(await self.record_receipts([(organization_id, wamid)]))

    async def record_receipts(self, receipts: Iterable[tuple[UUID, str]]) -> set[tuple[UUID, str]]:
        """Insert the receipts; returns those that were new (the others are redeliveries)."""
        values = [{"organization_id": org, "wamid": wamid} for org, wamid in dict.fromkeys(receipts)]
        if not values:
            return set()
        # executemany form: one cached statement, sent as multi-row INSERTs by SQLAlchemy.
        result = await self.session.execute(
            insert(InboundReceipt).on_conflict_do_nothing()
            .returning(InboundReceipt.organization_id, InboundReceipt.wamid), values)
        return {(row[0], row[1]) for row in result}

    async def lock_many(self, keys: Iterable[ConversationKey]) -> dict[ConversationKey, Conversation]:
        wanted = sorted(set(keys), key=str)
        if not wanted:
            return {}
        # Locked in id order, so concurrent batches (and the delay poller) cannot deadlock.
        result = await self.session.scalars(
            select(Conversation)
            .where(tuple_(Conversation.organization_id, Conversation.contact_key, Conversation.flow_id).in_(wanted))
            .order_by(Conversation.id)
            .with_for_update()
        )
        return {(row.organization_id, row.contact_key, row.flow_id): row for row in result}

    async def lock(self, organization_id: UUID, contact_key: str, flow_id: UUID) -> Conversation | None:
        return (await self.lock_many([(organization_id, contact_key, flow_id)])).get(
            (organization_id, contact_key, flow_id))

    async def get(self, organization_id: UUID, contact_key: str, flow_id: UUID) -> Conversation | None:
        return await self.session.scalar(
            select(Conversation).where(
                Conversation.organization_id == organization_id,
                Conversation.contact_key == contact_key,
                Conversation.flow_id == flow_id,
            )
        )

    async def by_id(self, organization_id: UUID, conversation_id: UUID, *, lock: bool = False) -> Conversation | None:
        query = select(Conversation).where(Conversation.organization_id == organization_id,
                                           Conversation.id == conversation_id)
        return await self.session.scalar(query.with_for_update() if lock else query)

    async def search(self, organization_id: UUID, *, status: str | None, flow_id: UUID | None,
                     contact_key: str | None, limit: int, offset: int) -> list[Conversation]:
        query = select(Conversation).where(Conversation.organization_id == organization_id)
        if status:
            query = query.where(Conversation.status == status)
        if flow_id:
            query = query.where(Conversation.flow_id == flow_id)
        if contact_key:
            query = query.where(Conversation.contact_key == contact_key)
        result = await self.session.scalars(
            query.order_by(Conversation.updated_at.desc(), Conversation.id).limit(limit).offset(offset))
        return list(result)

    async def lock_due(self, now: datetime, limit: int) -> list[Conversation]:
        # The poller spans tenants by design (like the outbox relay); each row keeps its own tenant.
        result = await self.session.scalars(
            select(Conversation)
            .where(Conversation.wake_at.is_not(None), Conversation.wake_at <= now,
                   Conversation.status == "sleeping")
            .order_by(Conversation.wake_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(result)

    def add(self, row: Conversation) -> None:
        self.session.add(row)


class OutboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, row: OutboxRecord) -> None:
        self.session.add(row)

    async def add_many(self, rows: list[dict[str, Any]]) -> None:
        """Insert in list order: `seq` follows it, and the relay publishes by `seq`."""
        if rows:
            await self.session.execute(core_insert(OutboxRecord), rows)

    async def request(self, organization_id: UUID, event_id: UUID) -> OutboxRecord | None:
        return await self.session.scalar(
            select(OutboxRecord).where(OutboxRecord.organization_id == organization_id, OutboxRecord.id == event_id))

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
