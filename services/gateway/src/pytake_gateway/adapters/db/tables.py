"""The gateway's own schema: the receipts that recognise Meta's redeliveries."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class WebhookReceipt(Base):
    """One row per message (m:<wamid>) or status (s:<wamid>:<status>) the forwarder passed on.

    The natural key is the primary key (no surrogate UUID): the table is looked up
    only by it, and a second index would only slow the hot insert.
    """

    __tablename__ = "webhook_receipts"

    dedup_key: Mapped[str] = mapped_column(sa.String(300), primary_key=True)
    created_at: Mapped[sa.DateTime] = mapped_column(sa.DateTime(timezone=True), nullable=False,
                                                    server_default=sa.func.now())
    updated_at: Mapped[sa.DateTime] = mapped_column(sa.DateTime(timezone=True), nullable=False,
                                                    server_default=sa.func.now())

    __table_args__ = (sa.Index("ix_webhook_receipts_created_at", "created_at"),)
