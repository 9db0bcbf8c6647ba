"""The flow engine's schema: flows and their versions, conversations, receipts, outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Identity, Index, Integer, String, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    # Server-side defaults (created_at, updated_at) come back with the INSERT/UPDATE, so rows
    # returned from a finished unit of work can be read without a session.
    __mapper_args__ = {"eager_defaults": True}


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(PgUUID(as_uuid=True), primary_key=True, default=uuid.uuid4)


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now())


def _updated() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now())


class Flow(Base):
    __tablename__ = "flows"
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), index=True)
    name: Mapped[str] = mapped_column(String(200))
    draft: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FlowVersion(Base):
    """An immutable published version; conversations stay on the version they began with."""

    __tablename__ = "flow_versions"
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), index=True)
    flow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("flows.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    source_version: Mapped[int | None] = mapped_column(Integer)
    published_by: Mapped[uuid.UUID | None] = mapped_column(PgUUID(as_uuid=True))
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    __table_args__ = (UniqueConstraint("flow_id", "version", name="uq_flow_versions_flow_version"),)


class Conversation(Base):
    """One state per (organization, contact, flow).

    `flow_id` is the flow the chatbot routes to (the key); after a jump, `active_flow_id`
    and `flow_version` name the flow actually running.
    """

    __tablename__ = "conversations"
    id: Mapped[uuid.UUID] = _id()
    organization_id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), index=True)
    contact_key: Mapped[str] = mapped_column(String(128))
    flow_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("flows.id"), index=True)
    flow_version: Mapped[int] = mapped_column(Integer)
    node_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    retries: Mapped[int] = mapped_column(Integer, default=0)
    variables: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    phone_number_id: Mapped[str] = mapped_column(String(64))
    contact: Mapped[dict[str, Any]] = mapped_column(JSONB)
    last_inbound_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    active_flow_id: Mapped[uuid.UUID | None] = mapped_column(PgUUID(as_uuid=True))
    wake_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    __table_args__ = (
        UniqueConstraint("organization_id", "contact_key", "flow_id", name="uq_conversations_org_contact_flow"),
        Index("ix_conversations_wake_at", "wake_at", postgresql_where="wake_at IS NOT NULL"),
        Index("ix_conversations_org_updated", "organization_id", "updated_at"),
    )


class InboundReceipt(Base):
    """A processed inbound message: a redelivered wamid is recognised and skipped."""

    __tablename__ = "inbound_receipts"
    organization_id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    wamid: Mapped[str] = mapped_column(String(255), primary_key=True)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()


class OutboxRecord(Base):
    """Events written in the same transaction as the state change, published after commit."""

    __tablename__ = "outbox"
    id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    organization_id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), index=True)
    topic: Mapped[str] = mapped_column(String(128))
    key: Mapped[str] = mapped_column(String(255))
    event: Mapped[dict[str, Any]] = mapped_column(JSONB)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _updated()
    __table_args__ = (Index("ix_outbox_pending", "seq", postgresql_where="published_at IS NULL"),)
