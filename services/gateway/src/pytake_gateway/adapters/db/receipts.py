"""Receipts of the messages and statuses the forwarder passed on, shared by every replica, in PostgreSQL.

One row per deduplication key, kept `retention` after it was first seen, then deleted by
`delete_expired`: storage is bounded by Meta's retry window times the traffic.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import asyncpg

from pytake_plumbing.database import create_plain_pool

from ...service.forward import ReceiptsUnavailable

# Keys go in sorted, so two forwarders recording overlapping keys during a rebalance lock
# them in the same order: one waits for the other, neither deadlocks.
RECORD = """
INSERT INTO webhook_receipts (dedup_key) SELECT unnest($1::text[])
ON CONFLICT (dedup_key) DO NOTHING
RETURNING dedup_key
"""
DELETE_EXPIRED = """
DELETE FROM webhook_receipts WHERE dedup_key IN (
    SELECT dedup_key FROM webhook_receipts WHERE created_at < now() - make_interval(secs => $1)
    LIMIT $2 FOR UPDATE SKIP LOCKED)
"""

DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class PostgresReceiptStore:
    def __init__(self, database_url: str, schema: str, *, pool_size: int = 4, timeout_s: float = 5.0) -> None:
        self._database_url = database_url
        self._schema = schema
        self._pool_size = pool_size
        self._timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        self._pool = await create_plain_pool(
            self._database_url, self._schema, max_size=self._pool_size, timeout_s=self._timeout_s,
            command_timeout=self._timeout_s,
            # A receipt lost in a PostgreSQL crash costs at most one duplicate downstream, never
            # a message (Kafka holds those): commits need not wait for the WAL flush.
            server_settings={"synchronous_commit": "off"},
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    @asynccontextmanager
    async def record(self, keys: Sequence[str]) -> AsyncIterator[set[str]]:
        if not keys:  # only webhook-level errors, which have no id: nothing to record
            yield set()
            return
        pool = self._started()
        try:
            connection = await pool.acquire()
        except DB_ERRORS as exc:
            raise ReceiptsUnavailable(f"{type(exc).__name__}: {exc}") from exc
        try:
            transaction = connection.transaction()
            try:
                await transaction.start()
                rows = await connection.fetch(RECORD, sorted(set(keys)))
            except DB_ERRORS as exc:
                await _quietly(transaction.rollback())
                raise ReceiptsUnavailable(f"{type(exc).__name__}: {exc}") from exc
            try:
                yield {row[0] for row in rows}
            except BaseException:
                await _quietly(transaction.rollback())
                raise
            try:
                await transaction.commit()
            except DB_ERRORS as exc:
                # The events are in Kafka: a redelivery may now be forwarded again (at least once).
                raise ReceiptsUnavailable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            await pool.release(connection)

    async def delete_expired(self, retention_s: float, batch: int = 10_000) -> int:
        """Delete receipts first seen more than `retention_s` ago; several replicas may run it at once."""
        pool = self._started()
        total = 0
        while True:
            try:
                status = await pool.execute(DELETE_EXPIRED, retention_s, batch)
            except DB_ERRORS as exc:
                raise ReceiptsUnavailable(f"{type(exc).__name__}: {exc}") from exc
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < batch:
                return total

    def _started(self) -> asyncpg.Pool:
        if self._pool is None:
            raise ReceiptsUnavailable("receipt store not started")
        return self._pool


async def _quietly(rollback) -> None:  # noqa: ANN001 - a coroutine
    try:
        await rollback
    except DB_ERRORS:
        pass  # never started, or the connection is gone and PostgreSQL rolled back already
