"""Kafka entrypoints: routed inbound messages (in batches) and delivery failures.

A batch of routed messages is applied in one transaction (receipts, states, outbox rows); the
runtime commits its offset afterwards. A crash in between hands the batch over again, and its
receipts make it a no-op. Retries, dead letters and commits: see pytake_plumbing.consumer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from pytake_contracts import Event, InboundMessageRouted, MessageFailed
from pytake_contracts.topics import MESSAGES_DELIVERY, MESSAGES_ROUTED
from pytake_plumbing.consumer import Consumer, DeadLetterSink, Subscription, each
from pytake_plumbing.logs import get_logger

from ..service.conversations import ConversationEngine
from ..service.outbox_relay import OutboxRelay
from ..settings import FlowEngineSettings

SERVICE = "flow-engine"
log = get_logger(__name__)


async def flush(relay: OutboxRelay) -> None:
    """Publish what was just committed; on failure the background relay publishes it later."""
    try:
        await relay.flush()
    except Exception as exc:
        log.warning("outbox_flush_deferred", error=repr(exc)[:300])


def consumers(settings: FlowEngineSettings, engine: ConversationEngine, relay: OutboxRelay,
              dead_letters: DeadLetterSink) -> list[Consumer]:
    """The flow engine's consumers, for the app to start and stop."""
    return [Consumer(settings, inbound(engine, relay, batch=settings.batch_max_records), dead_letters=dead_letters),
            Consumer(settings, delivery_failures(engine, relay), dead_letters=dead_letters)]


def inbound(engine: ConversationEngine, relay: OutboxRelay, *, batch: int) -> Subscription:
    # A backlog comes in batches of up to `batch`: one transaction and one offset commit each.
    async def handle(events: Sequence[Event]) -> None:
        await engine.handle_inbound_batch(cast(Sequence[InboundMessageRouted], events))  # all it accepts
        await flush(relay)

    return Subscription([MESSAGES_ROUTED], group=SERVICE, handler=handle, accepts=(InboundMessageRouted,),
                        batch=batch)


def delivery_failures(engine: ConversationEngine, relay: OutboxRelay) -> Subscription:
    async def on_failure(event: Event) -> None:
        assert isinstance(event, MessageFailed)
        if await engine.handle_delivery_failure(event):
            await flush(relay)

    # A consumer group of its own, so the two subscriptions never rebalance each other.
    return Subscription([MESSAGES_DELIVERY], group=f"{SERVICE}.delivery", handler=each(on_failure),
                        accepts=(MessageFailed,), batch=1)
