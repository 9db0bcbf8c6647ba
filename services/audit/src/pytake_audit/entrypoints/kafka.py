from __future__ import annotations

from collections.abc import Sequence

from faststream.kafka import KafkaBroker

from pytake_contracts import Event
from pytake_contracts.topics import CATALOG

from pytake_plumbing.batch_consumer import subscribe_batch
from pytake_plumbing.kafka_loop import BatchLoop

from ..service.record import EventStore, RetentionPolicy, record_events
from ..settings import AuditSettings
from . import handled_log


def register(broker: KafkaBroker, settings: AuditSettings, store: EventStore,
             retention: RetentionPolicy) -> BatchLoop:
    async def handle(events: Sequence[Event]) -> None:
        await record_events(events, store, retention)

    # Every topic the catalog lists audit as a consumer of: all but the gateway's own intake,
    # whose webhooks reach audit as the events the forwarder splits them into.
    audited = [spec for spec in CATALOG if "audit" in spec.consumers]
    return subscribe_batch(broker, settings, audited, service="audit", handler=handle,
                           max_records=settings.batch_max_records,
                           write_chunk=settings.write_chunk, writes_in_flight=settings.writes_in_flight,
                           on_handled=handled_log.write)
