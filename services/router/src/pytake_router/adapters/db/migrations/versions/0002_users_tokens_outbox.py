"""users, refresh tokens, the registry outbox; chatbot start keywords; live-only slug uniqueness

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _id_and_times() -> list[sa.Column]:
    return [
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    ]


def upgrade() -> None:
    # A soft-deleted organization must not keep its slug forever.
    op.drop_constraint("organizations_slug_key", "organizations", type_="unique")
    op.create_index("uq_organizations_slug_live", "organizations", ["slug"], unique=True,
                    postgresql_where=sa.text("deleted_at IS NULL"))
    op.create_index("ix_whatsapp_numbers_meta_app_id", "whatsapp_numbers", ["meta_app_id"])
    op.add_column("chatbots", sa.Column("start_keywords", postgresql.ARRAY(sa.String(100)), nullable=False,
                                        server_default="{}"))

    op.create_table(
        "users",
        *_id_and_times(),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.Column("organization_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("organizations.id")),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False, server_default=""),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.CheckConstraint("(role = 'platform_admin') = (organization_id IS NULL)",
                           name="ck_users_platform_admin_org"),
    )
    op.create_index("ix_users_organization_id", "users", ["organization_id"])
    op.create_index("uq_users_email_live", "users", ["email"], unique=True,
                    postgresql_where=sa.text("deleted_at IS NULL"))

    op.create_table(
        "refresh_tokens",
        *_id_and_times(),
        sa.Column("user_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_refresh_tokens_user_id", "refresh_tokens", ["user_id"])

    op.create_table(
        "outbox",
        *_id_and_times(),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("event", postgresql.JSONB, nullable=False),
    )
    op.create_index("ix_outbox_created_at", "outbox", ["created_at"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("refresh_tokens")
    op.drop_table("users")
    op.drop_column("chatbots", "start_keywords")
    op.drop_index("ix_whatsapp_numbers_meta_app_id", "whatsapp_numbers")
    op.drop_index("uq_organizations_slug_live", "organizations")
    op.create_unique_constraint("organizations_slug_key", "organizations", ["slug"])
