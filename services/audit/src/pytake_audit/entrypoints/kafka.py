from __future__ import annotations

from collections.abc import Sequence

from pytake_contracts import Event
from pytake_contracts.topics import CATALOG
from pytake_plumbing.consumer import Consumer, DeadLetterSink, RecordSource, Subscription

from ..service.record import EventStore, RetentionPolicy, record_events
from ..settings import AuditSettings


def consumers(settings: AuditSettings, store: EventStore, retention: RetentionPolicy,
              dead_letters: DeadLetterSink, source: RecordSource | None = None) -> list[Consumer]:
    """`source` stands in for Kafka in unit tests."""
    async def handle(events: Sequence[Event]) -> None:
        await record_events(events, store, retention)

    # Every topic the catalog lists audit as a consumer of: all but the gateway's own intake,
    # whose webhooks reach audit as the events the forwarder splits them into.
    audited = [spec for spec in CATALOG if "audit" in spec.consumers]
    # Order does not matter to audit (each event is a document of its own): `writes_in_flight` lanes
    # write at once, each keeping its partitions in order.
    record = Subscription(audited, group="audit", handler=handle, batch=settings.write_chunk,
                          linger_s=settings.write_linger_s, lanes=lambda r: r.partition % settings.writes_in_flight)
    return [Consumer(settings, record, dead_letters=dead_letters, max_buffered=settings.batch_max_records,
                     source=source)]
