"""The forwarder's Kafka handler: batches of stored webhooks from the intake topic."""

from __future__ import annotations

from collections.abc import Sequence

from faststream.kafka import KafkaBroker

from pytake_contracts import Event, WebhookReceived
from pytake_contracts.topics import WEBHOOK_INTAKE
from pytake_plumbing.batch_consumer import subscribe_batch
from pytake_plumbing.kafka_loop import BatchLoop, RecordSource
from pytake_plumbing.logs import get_logger

from ..adapters.metrics import ForwarderMetrics
from ..service.forward import ReceiptStore, forward_webhooks
from ..service.ingest import EventSink
from ..settings import GatewaySettings

log = get_logger(__name__)


def register(broker: KafkaBroker, settings: GatewaySettings, receipts: ReceiptStore, sink: EventSink,
             metrics: ForwarderMetrics, source: RecordSource | None = None) -> BatchLoop:
    async def handle(events: Sequence[Event]) -> None:
        received = [event for event in events if isinstance(event, WebhookReceived)]
        outcome = await forward_webhooks(received, receipts, sink)
        for event in outcome.forwarded:
            metrics.events_forwarded.labels(event.event_type).inc()
        for key in outcome.duplicates:
            metrics.duplicates.labels("status" if key.startswith("s:") else "message").inc()
        for reason in outcome.ignored:
            metrics.ignored.labels(reason.split(":", 1)[0]).inc()
        log.info("webhooks_forwarded", webhooks=len(received), events=len(outcome.forwarded),
                 duplicates=outcome.duplicates[:50], ignored=outcome.ignored[:50])

    # A poison webhook fails its batch, then is retried alone and dead-lettered (see BatchConsumer).
    return subscribe_batch(broker, settings, [WEBHOOK_INTAKE], service="gateway-forwarder", handler=handle,
                           accepts=(WebhookReceived,), max_records=settings.forward_batch_max_records,
                           source=source)
