"""Publishes committed outbox rows in commit order, then marks them published.

One relay at a time per schema (an advisory lock), so replies of one conversation are
never published out of order by two replicas. A crash between publishing and marking
publishes those rows again: consumers deduplicate by event_id.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime

from faststream.kafka import KafkaBroker
from opentelemetry import context, propagate

from pytake_plumbing.logs import get_logger

from ..adapters.db.unit_of_work import SqlUnitOfWork

log = get_logger(__name__)


class OutboxRelay:
    def __init__(self, uow_factory: Callable[[], SqlUnitOfWork], broker: KafkaBroker,
                 clock: Callable[[], datetime], batch: int = 500) -> None:
        self._uow_factory = uow_factory
        self._broker = broker
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
                    pending = []
                    for row in rows:
                        event = row.event
                        # Publish inside the event's own trace, even from the background relay.
                        carrier = {"traceparent": event.get("traceparent") or "",
                                   "tracestate": event.get("tracestate") or ""}
                        token = context.attach(propagate.extract(carrier))
                        try:
                            # Queued in seq order; the producer keeps that order per partition.
                            pending.append(await self._broker.publish(
                                json.dumps(event, separators=(",", ":")).encode(), row.topic, key=row.key.encode(),
                                headers={"event_type": event["event_type"],
                                         "schema_version": str(event["schema_version"]),
                                         "content-type": "application/json"},
                                correlation_id=event.get("correlation_id"),
                                no_confirm=True,
                            ))
                        finally:
                            context.detach(token)
                    await asyncio.gather(*pending)
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
