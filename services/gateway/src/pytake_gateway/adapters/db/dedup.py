"""Deduplication shared by every gateway replica, in PostgreSQL.

A key goes through two states: `pending` when a delivery claims it (before publishing),
`published` once Kafka has acknowledged the event. A failed publish deletes its claim; one
that may still land (Kafka away) keeps renewing it until it is known; a claim whose
replica died is taken over once its lease has run out.
Rows are kept `retention` after they were first seen, then deleted by `delete_expired`.

Claims and confirmations of concurrent requests share round trips (see coalescing.py):
one statement confirms what Kafka acknowledged, claims a whole batch of new keys, and
tells, for every key it did not claim, whether it is published or still pending.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import asyncpg

from pytake_plumbing.database import create_plain_pool

from ...service.ingest import Claim, DedupUnavailable
from .coalescing import KeyBatcher

# One round trip does a whole batch: the confirmations ($3) of publishes that Kafka
# acknowledged, and the claims ($1) of new deliveries. New keys are inserted; a stale
# pending claim is taken over; anything else is left alone. The outer SELECT sees the
# table as it was before the statement: the state of every key not claimed here (NULL
# when another transaction inserted it meanwhile, i.e. still in flight).
CLAIM_AND_CONFIRM = """
WITH confirmed AS (
    UPDATE webhook_receipts SET state = 'published', updated_at = now()
    WHERE dedup_key = ANY($3::text[])
),
incoming AS (SELECT unnest($1::text[]) AS key),
claimed AS (
    INSERT INTO webhook_receipts AS r (dedup_key, state, claimed_at)
    SELECT key, 'pending', now() FROM incoming
    ON CONFLICT (dedup_key) DO UPDATE SET claimed_at = now(), updated_at = now()
        WHERE r.state = 'pending' AND r.claimed_at < now() - make_interval(secs => $2)
    RETURNING dedup_key
)
SELECT i.key, c.dedup_key IS NOT NULL AS claimed, r.state
FROM incoming i
LEFT JOIN claimed c ON c.dedup_key = i.key
LEFT JOIN webhook_receipts r ON r.dedup_key = i.key
"""
CLAIMED, PUBLISHED, IN_FLIGHT, CONFIRMED = "claimed", "published", "in_flight", "confirmed"
CLAIM, CONFIRM = "claim", "confirm"
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


class PostgresDedupStore:
    def __init__(self, database_url: str, schema: str, *, lease_s: float, pool_size: int = 10,
                 timeout_s: float = 2.0) -> None:
        self._database_url = database_url
        self._schema = schema
        self._lease_s = lease_s
        self._pool_size = pool_size
        self._timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None
        # One statement in flight: everything that arrives meanwhile waits one round trip and
        # goes in the next, so a busy gateway sends few, large statements (asyncpg's cost is
        # per statement, not per key). Keys are (CLAIM | CONFIRM, dedup key).
        self._batches: KeyBatcher[tuple[str, str], str] = KeyBatcher(self._run_batch, max_in_flight=1)

    async def start(self) -> None:
        # min_size=0: the gateway starts (and keeps answering, without deduplication) while PostgreSQL is down.
        self._pool = await create_plain_pool(
            self._database_url, self._schema, max_size=self._pool_size, timeout_s=self._timeout_s,
            command_timeout=self._timeout_s,
            # The message itself is made durable by Kafka; a receipt lost in a PostgreSQL crash
            # costs at most one duplicate, never a message, so commits need not wait for the WAL flush.
            server_settings={"synchronous_commit": "off"},
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    async def claim(self, keys: Sequence[str]) -> Claim:
        # A key another request of this process is claiming right now is in flight for this one.
        busy = {key for key in keys if self._batches.is_waiting((CLAIM, key))}
        answers = await self._batches.submit([(CLAIM, key) for key in keys if key not in busy])
        claimed = {key for (_, key), answer in answers.items() if answer == CLAIMED}
        in_flight = busy | {key for (_, key), answer in answers.items() if answer == IN_FLIGHT}
        return Claim(claimed=claimed, in_flight=in_flight)

    async def confirm(self, keys: Collection[str]) -> None:
        await self._batches.submit([(CONFIRM, key) for key in keys])

    async def _run_batch(self, batch: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        claims = [key for kind, key in batch if kind == CLAIM]
        confirms = [key for kind, key in batch if kind == CONFIRM]
        pool = self._started()
        try:
            try:
                rows = await pool.fetch(CLAIM_AND_CONFIRM, claims, self._lease_s, confirms)
            except asyncpg.DeadlockDetectedError:
                # Two replicas confirming and claiming the same keys at once: PostgreSQL
                # cancelled one statement, which is safe to run again.
                rows = await pool.fetch(CLAIM_AND_CONFIRM, claims, self._lease_s, confirms)
        except DB_ERRORS as exc:
            raise DedupUnavailable(f"{type(exc).__name__}: {exc}") from exc
        answers = {(CONFIRM, key): CONFIRMED for key in confirms}
        for key, claimed, state in rows:
            answers[(CLAIM, key)] = CLAIMED if claimed else PUBLISHED if state == "published" else IN_FLIGHT
        return answers

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
