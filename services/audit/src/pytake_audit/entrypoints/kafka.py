from __future__ import annotations

from collections.abc import Sequence

from faststream.kafka import KafkaBroker

from pytake_contracts import Event
from pytake_contracts.topics import CATALOG

from ..service.record import EventStore, RetentionPolicy, record_events
from ..settings import AuditSettings
from .batch_consumer import BatchConsumer, subscribe_batch


def register(broker: KafkaBroker, settings: AuditSettings, store: EventStore,
             retention: RetentionPolicy) -> BatchConsumer:
    async def handle(events: Sequence[Event]) -> None:
        await record_events(events, store, retention)

    return subscribe_batch(broker, settings, list(CATALOG), service="audit", handler=handle,
                           max_records=settings.batch_max_records, batch_timeout_ms=settings.batch_timeout_ms,
                           write_chunk=settings.write_chunk, writes_in_flight=settings.writes_in_flight)
