"""Meta apps with an owner; refresh tokens grouped by login session

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meta_apps",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.Column("meta_app_id", sa.String(64), nullable=False),
        sa.Column("organization_id", postgresql.UUID(as_uuid=True), sa.ForeignKey("organizations.id")),
    )
    op.create_index("uq_meta_apps_meta_app_id_live", "meta_apps", ["meta_app_id"], unique=True,
                    postgresql_where=sa.text("deleted_at IS NULL"))
    op.create_index("ix_meta_apps_organization_id", "meta_apps", ["organization_id"])
    # Apps already in use: owned by their organization when only one uses them; shared ones become
    # platform-owned, so their numbers keep working and only the platform admin adds to them.
    op.execute("""
        INSERT INTO meta_apps (id, meta_app_id, organization_id)
        SELECT gen_random_uuid(), meta_app_id,
               CASE WHEN count(DISTINCT organization_id) = 1 THEN min(organization_id::text)::uuid END
        FROM whatsapp_numbers WHERE deleted_at IS NULL GROUP BY meta_app_id
    """)

    op.add_column("refresh_tokens", sa.Column("session_id", postgresql.UUID(as_uuid=True)))
    op.execute("UPDATE refresh_tokens SET session_id = id")
    op.alter_column("refresh_tokens", "session_id", nullable=False)
    op.create_index("ix_refresh_tokens_session_id", "refresh_tokens", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_refresh_tokens_session_id", "refresh_tokens")
    op.drop_column("refresh_tokens", "session_id")
    op.drop_table("meta_apps")
