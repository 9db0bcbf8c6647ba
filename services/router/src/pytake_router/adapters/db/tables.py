"""The router's schema: the tenant registry."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Index, LargeBinary, String, func, text
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Timestamps:
    id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now())
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Organization(Timestamps, Base):
    __tablename__ = "organizations"
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(100), unique=True)


class WhatsAppNumber(Timestamps, Base):
    __tablename__ = "whatsapp_numbers"
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    phone_number_id: Mapped[str] = mapped_column(String(64))
    display_phone_number: Mapped[str] = mapped_column(String(32))
    meta_app_id: Mapped[str] = mapped_column(String(64))
    # Secrets are Fernet tokens: encrypted at rest, decrypted only where used.
    verify_token_enc: Mapped[bytes] = mapped_column(LargeBinary)
    app_secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    access_token_enc: Mapped[bytes] = mapped_column(LargeBinary)
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (
        Index("uq_numbers_phone_number_id_live", "phone_number_id", unique=True,
              postgresql_where=text("deleted_at IS NULL")),
    )


class Chatbot(Timestamps, Base):
    __tablename__ = "chatbots"
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    number_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("whatsapp_numbers.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    flow_id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("uq_chatbots_default_per_number", "number_id", unique=True,
              postgresql_where=text("is_default AND deleted_at IS NULL")),
    )
