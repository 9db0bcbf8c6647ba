"""Kafka entrypoints: routed inbound messages (in batches) and delivery failures.

Routed messages are consumed in batches: a batch's receipts, states and outbox rows are
committed in one transaction, and only then is the batch's offset committed. A crash in
between redelivers the batch, whose receipts make it a no-op. When a batch fails for a
reason other than an outage, its records are retried one by one, so that a poison record
is dead-lettered alone and the others go through.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from pytake_contracts import (
    Event,
    InboundMessageRouted,
    MessageFailed,
    UnknownEventError,
    decode_event,
)
from pytake_contracts.topics import DEAD_LETTERS, MESSAGES_DELIVERY, MESSAGES_ROUTED
from pytake_plumbing.backoff import OUTAGE
from pytake_plumbing.kafka_loop import BatchLoop
from pytake_plumbing.logs import get_logger, log_context
from pytake_plumbing.messaging import (
    TRANSIENT_ERRORS,
    EventPublisher,
    PermanentError,
    dead_letter_event,
    is_transient,
    subscribe,
)

from ..service.conversations import ConversationEngine
from ..service.outbox_relay import OutboxRelay
from ..settings import FlowEngineSettings

SERVICE = "flow-engine"
MAX_ATTEMPTS = 5
log = get_logger(__name__)


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS) or is_transient(exc)


async def flush(relay: OutboxRelay) -> None:
    """Publish what was just committed; on failure the background relay publishes it later."""
    try:
        await relay.flush()
    except Exception as exc:
        log.warning("outbox_flush_deferred", error=repr(exc)[:300])


def register(broker: KafkaBroker, settings: FlowEngineSettings, engine: ConversationEngine,
             relay: OutboxRelay) -> BatchLoop:
    """Returns the consumer of routed messages, for the app to start and stop."""
    publisher = EventPublisher(broker, settings)
    crash_text = settings.crash_after_commit_text

    def crash_hook(events: list[InboundMessageRouted]) -> Callable[[], None] | None:
        if not crash_text or not any(e.payload.message.text == crash_text for e in events):
            return None

        def crash() -> None:
            log.warning("test_crash_after_commit")
            os._exit(70)  # test only: no offset commit, no relay flush, no cleanup

        return crash

    async def dead_letter(record: ConsumerRecord, error: str, tries: int, correlation: str | None) -> None:
        event = dead_letter_event(record, consumer=SERVICE, error=error, attempts=tries,
                                  correlation_id=correlation or "unknown")
        await publisher.publish(DEAD_LETTERS, event, record.topic)

    async def one_by_one(items: list[tuple[ConsumerRecord, InboundMessageRouted]]) -> None:
        for record, event in items:
            with log_context(correlation_id=event.correlation_id, event_id=str(event.event_id),
                             event_type=event.event_type, organization_id=str(event.organization_id)):
                for attempt in range(1, MAX_ATTEMPTS + 1):
                    try:
                        await engine.handle_inbound_batch([event], after_commit=crash_hook([event]))
                        log.info("event_handled", topic=record.topic, partition=record.partition,
                                 offset=record.offset)
                        break
                    except PermanentError as exc:
                        await dead_letter(record, f"{type(exc).__name__}: {exc}", attempt, event.correlation_id)
                        break
                    except Exception as exc:
                        if _transient(exc):
                            raise  # an outage: the whole batch is redelivered
                        if attempt == MAX_ATTEMPTS:
                            await dead_letter(record, f"{type(exc).__name__}: {exc}", attempt,
                                              event.correlation_id)
                            break
                        log.warning("handler_failed_will_retry", error=repr(exc)[:500], attempt=attempt)
                        await asyncio.sleep(OUTAGE.delay(attempt))

    outages = 0

    async def on_batch(records: Sequence[ConsumerRecord]) -> None:
        nonlocal outages
        items: list[tuple[ConsumerRecord, InboundMessageRouted]] = []
        for record in records:
            try:
                event = decode_event(record.value or b"")
            except (ValidationError, UnknownEventError, ValueError) as exc:
                await dead_letter(record, f"undecodable: {exc}", 1, None)
                continue
            if isinstance(event, InboundMessageRouted):
                items.append((record, event))
        if not items:
            return
        events = [event for _, event in items]
        try:
            await engine.handle_inbound_batch(events, after_commit=crash_hook(events))
            outages = 0
            for record, event in items:
                with log_context(correlation_id=event.correlation_id, event_id=str(event.event_id),
                                 event_type=event.event_type, organization_id=str(event.organization_id)):
                    log.info("event_handled", topic=record.topic, partition=record.partition, offset=record.offset)
        except Exception as exc:
            if _transient(exc):
                outages += 1
                log.warning("batch_failed_will_retry", error=repr(exc)[:500], attempt=outages)
                await asyncio.sleep(OUTAGE.delay(outages))
                raise  # the loop delivers the batch again, partition order kept
            log.warning("batch_failed_retrying_one_by_one", error=repr(exc)[:500], records=len(items))
            await one_by_one(items)
        await flush(relay)

    async def on_delivery(event: Event) -> None:
        assert isinstance(event, MessageFailed)
        if await engine.handle_delivery_failure(event):
            await flush(relay)

    # A consumer group of its own, so the two subscriptions never rebalance each other.
    subscribe(broker, settings, [MESSAGES_DELIVERY], service=f"{SERVICE}.delivery", handler=on_delivery,
              accepts=(MessageFailed,))
    return BatchLoop(settings, [MESSAGES_ROUTED], group=SERVICE, handler=on_batch,
                     max_records=settings.batch_max_records)
