"""Publishes the registry's outbox to Kafka.

Changes and their announcements are committed together (transactional outbox); this
relay publishes what was committed and deletes it only once Kafka acknowledged it.
It wakes at once after a local commit and polls otherwise, which also covers rows
written by the CLI (seed-tenant) or by another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pytake_contracts import decode_event
from pytake_contracts.topics import CATALOG
from pytake_plumbing.backoff import OUTAGE
from pytake_plumbing.logs import get_logger
from pytake_plumbing.record_producer import RecordProducer

from .db.repository import OutboxRepository

log = get_logger(__name__)
TOPICS = {spec.name: spec for spec in CATALOG}


class OutboxRelay:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], publisher: RecordProducer, *,
                 poll_interval_s: float = 1.0, batch: int = 100) -> None:
        self._sessions = sessions
        self._publisher = publisher
        self._poll_interval_s = poll_interval_s
        self._batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def relay_once(self) -> int:
        """Publish up to one batch; returns how many records went out."""
        async with self._sessions() as session, session.begin():
            outbox = OutboxRepository(session)
            records = await outbox.claim(self._batch)
            if not records:
                return 0
            await self._publisher.publish_all([
                (TOPICS[r.topic], decode_event(json.dumps(r.event)), r.key) for r in records
            ])
            await outbox.remove([r.id for r in records])
        log.info("outbox_relayed", records=len(records))
        return len(records)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                sent = await self.relay_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an outage: keep the rows, try again later
                failures += 1
                log.warning("outbox_relay_failed", error=repr(exc)[:500], attempt=failures)
                sent = 0
                await asyncio.sleep(OUTAGE.delay(failures))
            if sent == self._batch:
                continue  # more may be waiting
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval_s)
            self._wake.clear()
