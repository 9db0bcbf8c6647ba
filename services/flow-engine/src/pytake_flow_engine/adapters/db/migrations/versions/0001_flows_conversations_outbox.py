"""flows, flow versions, conversations, inbound receipts, outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UUID = postgresql.UUID(as_uuid=True)


def _stamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "flows",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("organization_id", UUID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        *_stamps(),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_flows_organization_id", "flows", ["organization_id"])
    op.create_table(
        "flow_versions",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("organization_id", UUID, nullable=False),
        sa.Column("flow_id", UUID, sa.ForeignKey("flows.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("definition", postgresql.JSONB, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        *_stamps(),
        sa.UniqueConstraint("flow_id", "version", name="uq_flow_versions_flow_version"),
    )
    op.create_index("ix_flow_versions_organization_id", "flow_versions", ["organization_id"])
    op.create_index("ix_flow_versions_flow_id", "flow_versions", ["flow_id"])
    op.create_table(
        "conversations",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("organization_id", UUID, nullable=False),
        sa.Column("contact_key", sa.String(128), nullable=False),
        sa.Column("flow_id", UUID, sa.ForeignKey("flows.id"), nullable=False),
        sa.Column("flow_version", sa.Integer, nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("retries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("variables", postgresql.JSONB, nullable=False),
        sa.Column("phone_number_id", sa.String(64), nullable=False),
        sa.Column("contact", postgresql.JSONB, nullable=False),
        sa.Column("last_inbound_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        *_stamps(),
        sa.UniqueConstraint("organization_id", "contact_key", "flow_id", name="uq_conversations_org_contact_flow"),
    )
    op.create_index("ix_conversations_organization_id", "conversations", ["organization_id"])
    op.create_index("ix_conversations_flow_id", "conversations", ["flow_id"])
    op.create_table(
        "inbound_receipts",
        sa.Column("organization_id", UUID, primary_key=True),
        sa.Column("wamid", sa.String(255), primary_key=True),
        *_stamps(),
    )
    op.create_table(
        "outbox",
        sa.Column("id", UUID, primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False, unique=True),
        sa.Column("organization_id", UUID, nullable=False),
        sa.Column("topic", sa.String(128), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("event", postgresql.JSONB, nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True)),
        *_stamps(),
    )
    op.create_index("ix_outbox_organization_id", "outbox", ["organization_id"])
    op.create_index("ix_outbox_pending", "outbox", ["seq"], postgresql_where=sa.text("published_at IS NULL"))


def downgrade() -> None:
    for table in ("outbox", "inbound_receipts", "conversations", "flow_versions", "flows"):
        op.drop_table(table)
