"""The forwarder's Kafka handler: batches of stored webhooks from the intake topic."""

from __future__ import annotations

from collections.abc import Sequence

from pytake_contracts import Event, WebhookReceived
from pytake_contracts.topics import WEBHOOK_INTAKE
from pytake_plumbing.consumer import Consumer, DeadLetterSink, RecordSource, Subscription
from pytake_plumbing.logs import get_logger

from ..adapters.metrics import ForwarderMetrics
from ..service.forward import ReceiptStore, forward_webhooks
from ..service.ingest import EventSink
from ..settings import GatewaySettings

log = get_logger(__name__)


def consumers(settings: GatewaySettings, receipts: ReceiptStore, sink: EventSink, metrics: ForwarderMetrics,
              dead_letters: DeadLetterSink, source: RecordSource | None = None) -> list[Consumer]:
    """`source` stands in for Kafka in unit tests."""
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

    # A poison webhook (UnreadableWebhook) fails its batch, is then tried alone and dead-lettered.
    forward = Subscription([WEBHOOK_INTAKE], group="gateway-forwarder", handler=handle, accepts=(WebhookReceived,),
                           batch=settings.forward_batch_max_records)
    return [Consumer(settings, forward, dead_letters=dead_letters, source=source)]
