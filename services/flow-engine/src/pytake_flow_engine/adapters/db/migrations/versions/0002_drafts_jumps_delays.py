"""flow drafts, version provenance, conversation jumps, delays and errors

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

UUID = postgresql.UUID(as_uuid=True)


def upgrade() -> None:
    op.add_column("flows", sa.Column("draft", postgresql.JSONB))
    op.add_column("flow_versions", sa.Column("source_version", sa.Integer))
    op.add_column("flow_versions", sa.Column("published_by", UUID))
    op.add_column("conversations", sa.Column("active_flow_id", UUID))
    op.add_column("conversations", sa.Column("wake_at", sa.DateTime(timezone=True)))
    op.add_column("conversations", sa.Column("error", sa.String(500)))
    # The delay poller looks only at sleeping conversations.
    op.create_index("ix_conversations_wake_at", "conversations", ["wake_at"],
                    postgresql_where=sa.text("wake_at IS NOT NULL"))
    op.create_index("ix_conversations_org_updated", "conversations", ["organization_id", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_conversations_org_updated", table_name="conversations")
    op.drop_index("ix_conversations_wake_at", table_name="conversations")
    for column in ("error", "wake_at", "active_flow_id"):
        op.drop_column("conversations", column)
    op.drop_column("flow_versions", "published_by")
    op.drop_column("flow_versions", "source_version")
    op.drop_column("flows", "draft")
