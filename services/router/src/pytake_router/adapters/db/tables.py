"""The router's schema: the tenant registry."""

from __future__ import annotations

import uuid
from datetime import datetime

from typing import Any

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, LargeBinary, String, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    # Server-set columns (created_at, updated_at) come back with RETURNING, so rows
    # can be turned into responses after a commit without a lazy load.
    __mapper_args__ = {"eager_defaults": True}


class Timestamps:
    id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now())
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Organization(Timestamps, Base):
    __tablename__ = "organizations"
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(100))

    __table_args__ = (
        # A deleted organization's slug may be taken again.
        Index("uq_organizations_slug_live", "slug", unique=True, postgresql_where=text("deleted_at IS NULL")),
    )


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
        Index("ix_whatsapp_numbers_meta_app_id", "meta_app_id"),
        Index("uq_numbers_phone_number_id_live", "phone_number_id", unique=True,
              postgresql_where=text("deleted_at IS NULL")),
    )


class MetaApp(Timestamps, Base):
    """A Meta app whose webhooks PyTake receives. Its numbers all belong to its owner; a
    platform-owned app (no organization) is one a provider serves many businesses through,
    and only the platform admin binds numbers to it."""

    __tablename__ = "meta_apps"
    meta_app_id: Mapped[str] = mapped_column(String(64))
    organization_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organizations.id"), index=True)

    __table_args__ = (
        Index("uq_meta_apps_meta_app_id_live", "meta_app_id", unique=True, postgresql_where=text("deleted_at IS NULL")),
    )


class Chatbot(Timestamps, Base):
    __tablename__ = "chatbots"
    organization_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("organizations.id"), index=True)
    number_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("whatsapp_numbers.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    flow_id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    # Start conditions: an inbound text equal to one of these (case-insensitive) starts this chatbot.
    start_keywords: Mapped[list[str]] = mapped_column(ARRAY(String(100)), default=list, server_default="{}")

    __table_args__ = (
        Index("uq_chatbots_default_per_number", "number_id", unique=True,
              postgresql_where=text("is_default AND deleted_at IS NULL")),
    )


class User(Timestamps, Base):
    __tablename__ = "users"
    # NULL only for platform admins, who belong to no organization.
    organization_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(Boolean, default=True)

    __table_args__ = (
        Index("uq_users_email_live", "email", unique=True, postgresql_where=text("deleted_at IS NULL")),
        CheckConstraint("(role = 'platform_admin') = (organization_id IS NULL)", name="ck_users_platform_admin_org"),
    )


class RefreshToken(Base):
    """One refresh token (only its SHA-256 is stored); each refresh spends it and issues the next."""

    __tablename__ = "refresh_tokens"
    id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now())
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    # The login this token descends from: every refresh keeps it, and access tokens carry it
    # (claim `sid`), so a logout ends the access tokens of that login too.
    session_id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), default=uuid.uuid4, index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OutboxRecord(Base):
    """An event written in the same transaction as the change it announces; a relay publishes it."""

    __tablename__ = "outbox"
    id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=func.now())
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200))
    event: Mapped[dict[str, Any]] = mapped_column(JSONB)


class LoginThrottle(Base):
    """Failed logins per key (`account:<sha256 of email>`, `address:<ip>`); see domain.login_throttle.
    Rows of keys left alone for long are swept, so the table holds recent keys only."""

    __tablename__ = "login_throttle"
    id: Mapped[uuid.UUID] = mapped_column(PgUUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                 onupdate=func.now(), index=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_failure_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
