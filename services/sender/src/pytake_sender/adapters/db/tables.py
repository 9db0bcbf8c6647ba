"""The sender's schema: one row per outbound request (so each is sent once), and each
number's limits and rate permits (shared by every sender replica)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, Integer, String, Text, UniqueConstraint, func
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class OutboundDelivery(Base):
    __tablename__ = "outbound_deliveries"
    id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True)  # the request's event_id
    organization_id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), index=True)
    phone_number_id: Mapped[str] = mapped_column(String(64))
    # sending (claimed, maybe in flight) | uncertain (sent, no answer) | sent | failed
    status: Mapped[str] = mapped_column(String(16))
    wamid: Mapped[str | None] = mapped_column(String(255), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[int | None] = mapped_column(Integer)
    error_message: Mapped[str | None] = mapped_column(Text)
    # Who may send it now: a replica that takes over an unresolved send changes the token.
    claim_token: Mapped[uuid.UUID | None] = mapped_column(PgUUID(as_uuid=True))
    contact_key: Mapped[str | None] = mapped_column(String(300))
    recipient: Mapped[str | None] = mapped_column(Text)  # the ContactRef, as JSON
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(PgUUID(as_uuid=True))
    delivery_status: Mapped[str | None] = mapped_column(String(16))  # Meta's latest: sent, delivered, read, failed
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())


class NumberLimit(Base):
    __tablename__ = "number_limits"
    __table_args__ = (UniqueConstraint("organization_id", "phone_number_id", name="uq_number_limits_number"),)
    id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    organization_id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), index=True)
    phone_number_id: Mapped[str] = mapped_column(String(64))
    messages_per_second: Mapped[int] = mapped_column(Integer)
    permits: Mapped[int] = mapped_column(Integer, default=0)  # permit rows created for that rate
    paused_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pause_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())


class RatePermit(Base):
    """One of a number's `messages_per_second` permits. A send holds one from its start until
    one second after its answer, so no second ever sees more sends than there are permits."""

    __tablename__ = "rate_permits"
    __table_args__ = (UniqueConstraint("organization_id", "phone_number_id", "slot", name="uq_rate_permits_slot"),)
    id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    organization_id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), index=True)
    phone_number_id: Mapped[str] = mapped_column(String(64))
    slot: Mapped[int] = mapped_column(Integer)
    holder: Mapped[str | None] = mapped_column(String(64))
    free_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now())
