"""Async PostgreSQL access: one schema per service, migrations through Alembic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine


def make_engine(database_url: str, schema: str, *, pool_size: int = 10) -> AsyncEngine:
    # Each service sees only its own schema: tables are unqualified in code and
    # resolved through search_path, so a namespace can move the whole schema.
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        pool_pre_ping=True,
        # An error's text never carries bind values (secrets, customers' words) into a log.
        hide_parameters=True,
        connect_args={"server_settings": {"search_path": schema, "application_name": f"pytake-{schema}"}},
    )


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False)


def run_migrations(migrations_dir: Path, database_url: str, schema: str, revision: str = "head") -> None:
    """Upgrade `schema` to `revision` with the service's own Alembic scripts."""
    # Imported here: only the migrate command needs Alembic, and every service start would pay
    # a tenth of a second for it (a restarted replica takes its partitions back that much later).
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir))
    cfg.attributes["database_url"] = database_url
    cfg.attributes["schema"] = schema
    command.upgrade(cfg, revision)


def asyncpg_dsn(database_url: str) -> str:
    """DATABASE_URL names SQLAlchemy's driver (postgresql+asyncpg://); asyncpg wants plain postgresql://."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_plain_pool(database_url: str, schema: str, *, max_size: int, timeout_s: float,
                            server_settings: dict[str, str] | None = None, **options: Any) -> asyncpg.Pool:
    """A plain asyncpg pool on the service's schema, for hot paths where a SQLAlchemy session's
    round trips (pre-ping, BEGIN, COMMIT) cost more than the statement: each statement runs in
    autocommit unless the caller opens a transaction (and ends it before releasing the
    connection). min_size=0, so the service starts and waits out an outage like with an engine.
    """
    return await asyncpg.create_pool(
        asyncpg_dsn(database_url), min_size=0, max_size=max_size, timeout=timeout_s,
        # No session state is ever left on these connections (no SET, open transaction, cursor or LISTEN),
        # so the reset asyncpg runs on each release would only cost a round trip per statement.
        reset=_nothing_to_reset,
        server_settings={"search_path": schema, "application_name": f"pytake-{schema}", **(server_settings or {})},
        **options,
    )


async def _nothing_to_reset(_: asyncpg.Connection) -> None:
    return None
