"""receipts are written once the events are forwarded: no claim state or lease

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_column("webhook_receipts", "state")
    op.drop_column("webhook_receipts", "claimed_at")


def downgrade() -> None:
    op.add_column("webhook_receipts", sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False,
                                                server_default=sa.func.now()))
    op.add_column("webhook_receipts", sa.Column("state", sa.String(16), nullable=False,
                                                server_default="published"))
