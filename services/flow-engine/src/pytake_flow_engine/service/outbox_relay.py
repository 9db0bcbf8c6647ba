"""Publishes committed outbox rows in commit order, then marks them published.

One relay at a time per schema (an advisory lock), so replies of one conversation are
never published out of order by two replicas. A crash between publishing and marking
publishes those rows again: consumers deduplicate by event_id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from pytake_plumbing.logs import get_logger
from pytake_plumbing.record_producer import RecordProducer, encoded_record

from ..adapters.db.unit_of_work import SqlUnitOfWork

log = get_logger(__name__)


class OutboxRelay:
    def __init__(self, uow_factory: Callable[[], SqlUnitOfWork], producer: RecordProducer,
                 clock: Callable[[], datetime], batch: int = 500) -> None:
        self._uow_factory = uow_factory
        self._producer = producer
        self._clock = clock
        self._batch = batch
        self._lock = asyncio.Lock()

    async def flush(self) -> int:
        published = 0
        async with self._lock:
            while True:
                async with self._uow_factory() as tx:
                    if not await tx.relay_lock():
                        return published  # another replica is relaying right now
                    rows = await tx.outbox.claim_pending(self._batch)
                    if not rows:
                        return published
                    # In seq order; the producer keeps that order per partition. The rows carry their
                    # trace context, which goes into the records' headers.
                    await self._producer.publish_encoded(
                        [encoded_record(row.topic, row.key, row.event) for row in rows])
                    await tx.outbox.mark_published([row.id for row in rows], self._clock())
                    await tx.commit()
                    published += len(rows)

    async def run_forever(self, interval_s: float = 2.0) -> None:
        while True:
            try:
                await self.flush()
            except Exception as exc:  # keep relaying once the dependency is back
                log.warning("outbox_relay_failed", error=repr(exc)[:300])
            await asyncio.sleep(interval_s)
