"""Async PostgreSQL access: one schema per service, migrations through Alembic."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def make_engine(database_url: str, schema: str, *, pool_size: int = 10) -> AsyncEngine:
    # Each service sees only its own schema: tables are unqualified in code and
    # resolved through search_path, so a namespace can move the whole schema.
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        pool_pre_ping=True,
        connect_args={"server_settings": {"search_path": schema, "application_name": f"pytake-{schema}"}},
    )


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def run_migrations(migrations_dir: Path, database_url: str, schema: str, revision: str = "head") -> None:
    """Upgrade `schema` to `revision` with the service's own Alembic scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["schema"] = schema
    command.upgrade(cfg, revision)
