"""Deduplication shared by every gateway replica, in PostgreSQL.

A key goes through two states: `pending` when a delivery claims it (before publishing),
`published` once Kafka has acknowledged the event. A failed publish deletes its claim; one
that may still land (Kafka away) keeps renewing it until it is known; a claim whose
replica died is taken over once its lease has run out.
Rows are kept `retention` after they were first seen, then deleted by `delete_expired`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import asyncpg
from sqlalchemy.engine import make_url

from ...service.ingest import Claim, DedupUnavailable

# New keys are inserted; a stale pending claim is taken over; anything else is left alone.
CLAIM = """
INSERT INTO webhook_receipts AS r (dedup_key, state, claimed_at)
SELECT key, 'pending', now() FROM unnest($1::text[]) AS key
ON CONFLICT (dedup_key) DO UPDATE SET claimed_at = now(), updated_at = now()
    WHERE r.state = 'pending' AND r.claimed_at < now() - make_interval(secs => $2)
RETURNING dedup_key
"""
PENDING = "SELECT dedup_key FROM webhook_receipts WHERE dedup_key = ANY($1::text[]) AND state = 'pending'"
CONFIRM = """
UPDATE webhook_receipts SET state = 'published', updated_at = now() WHERE dedup_key = ANY($1::text[])
"""
RENEW = """
UPDATE webhook_receipts SET claimed_at = now(), updated_at = now() WHERE dedup_key = ANY($1::text[]) AND state = 'pending'
"""
RELEASE = "DELETE FROM webhook_receipts WHERE dedup_key = ANY($1::text[]) AND state = 'pending'"
DELETE_EXPIRED = """
DELETE FROM webhook_receipts WHERE dedup_key IN (
    SELECT dedup_key FROM webhook_receipts WHERE created_at < now() - make_interval(secs => $1)
    LIMIT $2 FOR UPDATE SKIP LOCKED)
"""

DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def asyncpg_dsn(database_url: str) -> str:
    """DATABASE_URL names SQLAlchemy's driver (postgresql+asyncpg://); asyncpg wants plain postgresql://."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresDedupStore:
    def __init__(self, database_url: str, schema: str, *, lease_s: float, pool_size: int = 10,
                 timeout_s: float = 2.0) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._schema = schema
        self._lease_s = lease_s
        self._pool_size = pool_size
        self._timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        # min_size=0: the gateway starts (and keeps answering, without deduplication) while PostgreSQL is down.
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=0, max_size=self._pool_size, timeout=self._timeout_s,
            command_timeout=self._timeout_s,
            # These connections hold no session state (no locks, cursors, LISTEN or SET),
            # so the default reset on release would only cost a round trip per query.
            reset=_keep_session,
            server_settings={"search_path": self._schema, "application_name": f"pytake-{self._schema}",
                             # The message itself is made durable by Kafka; a receipt lost in a
                             # PostgreSQL crash costs at most one duplicate, never a message, so
                             # commits need not wait for the WAL flush.
                             "synchronous_commit": "off"},
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def claim(self, keys: Sequence[str]) -> Claim:
        pool = self._started()
        try:
            claimed = {row[0] for row in await pool.fetch(CLAIM, list(keys), self._lease_s)}
            rest = [key for key in keys if key not in claimed]
            in_flight = {row[0] for row in await pool.fetch(PENDING, rest)} if rest else set()
        except DB_ERRORS as exc:
            raise DedupUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return Claim(claimed=claimed, in_flight=in_flight)

    async def confirm(self, keys: Collection[str]) -> None:
        await self._execute(CONFIRM, sorted(keys))

    async def release(self, keys: Collection[str]) -> None:
        await self._execute(RELEASE, sorted(keys))

    async def renew(self, keys: Collection[str]) -> None:
        """Keep claims whose publish is still under way from being taken over."""
        await self._execute(RENEW, sorted(keys))

    async def delete_expired(self, retention_s: float, batch: int = 10_000) -> int:
        """Delete receipts first seen more than `retention_s` ago; several replicas may run it at once."""
        pool = self._started()
        total = 0
        while True:
            try:
                status = await pool.execute(DELETE_EXPIRED, retention_s, batch)
            except DB_ERRORS as exc:
                raise DedupUnavailable(f"{type(exc).__name__}: {exc}") from exc
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < batch:
                return total

    async def _execute(self, query: str, keys: list[str]) -> None:
        if not keys:
            return
        try:
            await self._started().execute(query, keys)
        except DB_ERRORS as exc:
            raise DedupUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _started(self) -> asyncpg.Pool:
        if self._pool is None:
            raise DedupUnavailable("dedup store not started")
        return self._pool


async def _keep_session(connection: asyncpg.Connection) -> None:
    return None
