"""A service's schema migrated under a name of the test's own, dropped afterwards."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

from pytake_plumbing.database import asyncpg_dsn, run_migrations
from pytake_plumbing.settings import CommonSettings


@asynccontextmanager
async def migrated_schema(settings: CommonSettings, service: str, migrations: Path, purpose: str) -> AsyncIterator[str]:
    name = f"{settings.db_schema(service)}_{purpose}_{secrets.token_hex(3)}"
    await asyncio.to_thread(run_migrations, migrations, settings.database_url, name)
    try:
        yield name
    finally:
        connection = await asyncpg.connect(asyncpg_dsn(settings.database_url))
        try:
            await connection.execute(f'DROP SCHEMA "{name}" CASCADE')
        finally:
            await connection.close()
