"""number limits, rate permits, and what resolving a send needs

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    ]


def upgrade() -> None:
    op.add_column("outbound_deliveries", sa.Column("error_message", sa.Text))
    op.add_column("outbound_deliveries", sa.Column("claim_token", postgresql.UUID(as_uuid=True)))
    op.add_column("outbound_deliveries", sa.Column("contact_key", sa.String(300)))
    op.add_column("outbound_deliveries", sa.Column("recipient", sa.Text))
    op.add_column("outbound_deliveries", sa.Column("conversation_id", postgresql.UUID(as_uuid=True)))
    op.add_column("outbound_deliveries", sa.Column("delivery_status", sa.String(16)))

    op.create_table(
        "number_limits",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("phone_number_id", sa.String(64), nullable=False),
        sa.Column("messages_per_second", sa.Integer, nullable=False),
        sa.Column("permits", sa.Integer, nullable=False, server_default="0"),
        sa.Column("paused_until", sa.DateTime(timezone=True)),
        sa.Column("pause_reason", sa.Text),
        *_timestamps(),
        sa.UniqueConstraint("organization_id", "phone_number_id", name="uq_number_limits_number"),
    )
    op.create_index("ix_number_limits_organization_id", "number_limits", ["organization_id"])

    op.create_table(
        "rate_permits",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("phone_number_id", sa.String(64), nullable=False),
        sa.Column("slot", sa.Integer, nullable=False),
        sa.Column("holder", sa.String(64)),
        sa.Column("free_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        *_timestamps(),
        sa.UniqueConstraint("organization_id", "phone_number_id", "slot", name="uq_rate_permits_slot"),
    )
    op.create_index("ix_rate_permits_organization_id", "rate_permits", ["organization_id"])


def downgrade() -> None:
    op.drop_table("rate_permits")
    op.drop_table("number_limits")
    for column in ("delivery_status", "conversation_id", "recipient", "contact_key", "claim_token",
                   "error_message"):
        op.drop_column("outbound_deliveries", column)
