"""tenant registry: organizations, whatsapp numbers, chatbots

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


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
    ]


def upgrade() -> None:
    op.create_table(
        "organizations",
        *_timestamps(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("slug", sa.String(100), nullable=False, unique=True),
    )
    op.create_table(
        "whatsapp_numbers",
        *_timestamps(),
        sa.Column("organization_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("phone_number_id", sa.String(64), nullable=False),
        sa.Column("display_phone_number", sa.String(32), nullable=False),
        sa.Column("meta_app_id", sa.String(64), nullable=False),
        sa.Column("verify_token_enc", sa.LargeBinary, nullable=False),
        sa.Column("app_secret_enc", sa.LargeBinary, nullable=False),
        sa.Column("access_token_enc", sa.LargeBinary, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    )
    op.create_index("ix_whatsapp_numbers_organization_id", "whatsapp_numbers", ["organization_id"])
    op.create_index(
        "uq_numbers_phone_number_id_live", "whatsapp_numbers", ["phone_number_id"], unique=True,
        postgresql_where=sa.text("deleted_at IS NULL"),
    )
    op.create_table(
        "chatbots",
        *_timestamps(),
        sa.Column("organization_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("organizations.id"), nullable=False),
        sa.Column("number_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("whatsapp_numbers.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("flow_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("is_default", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_index("ix_chatbots_organization_id", "chatbots", ["organization_id"])
    op.create_index("ix_chatbots_number_id", "chatbots", ["number_id"])
    op.create_index(
        "uq_chatbots_default_per_number", "chatbots", ["number_id"], unique=True,
        postgresql_where=sa.text("is_default AND deleted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("chatbots")
    op.drop_table("whatsapp_numbers")
    op.drop_table("organizations")
