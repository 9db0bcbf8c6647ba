"""A plain asyncpg pool for the statements run around every send.

Through SQLAlchemy's session each batched statement cost four round trips (a pre-ping,
BEGIN, the statement, COMMIT) and a greenlet switch per call; here it is one round trip in
autocommit. Each of these statements is a transaction on its own, committed before the
call returns (synchronous commit stays on: a delivery record lost in a crash could mean a
message sent twice)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from pytake_plumbing.database import create_plain_pool

# What a lost or refused connection looks like from asyncpg: an outage, waited out by callers.
CONNECTION_ERRORS = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                     asyncpg.CannotConnectNowError, TimeoutError)


class DirectPool:
    def __init__(self, database_url: str, schema: str, *, size: int = 5, timeout_s: float = 10.0) -> None:
        self._database_url = database_url
        self._schema = schema
        self._size = size
        self._timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None
        self._opening: asyncio.Lock | None = None

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        pool = self._pool or await self._open()
        try:
            return await pool.fetch(query, *args, timeout=self._timeout_s)
        except CONNECTION_ERRORS as exc:
            raise ConnectionError(f"PostgreSQL unavailable: {exc!r}"[:300]) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside a transaction, for statements that must see and change rows together."""
        pool = self._pool or await self._open()
        try:
            async with pool.acquire(timeout=self._timeout_s) as connection, connection.transaction():
                yield connection
        except CONNECTION_ERRORS as exc:
            raise ConnectionError(f"PostgreSQL unavailable: {exc!r}"[:300]) from exc

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _open(self) -> asyncpg.Pool:
        # Opened on first use: the process starts (and waits out an outage) like with SQLAlchemy's engine.
        self._opening = self._opening or asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                try:
                    self._pool = await create_plain_pool(self._database_url, self._schema, max_size=self._size,
                                                         timeout_s=self._timeout_s)
                except CONNECTION_ERRORS as exc:
                    raise ConnectionError(f"PostgreSQL unavailable: {exc!r}"[:300]) from exc
            return self._pool
