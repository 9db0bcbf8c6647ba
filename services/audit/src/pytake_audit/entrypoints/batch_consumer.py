"""A batch variant of `pytake_plumbing.messaging.subscribe`: many records per write.

- A batch is handed to the handler as one list; its offsets are committed only after the
  handler returned (FastStream acks the batch), so nothing is lost if the process dies.
- Dependency outages (the store is down) → wait with backoff, then the whole batch is
  redelivered (NACK rewinds every partition of the batch): the consumer pauses, not loses.
- Undecodable records and events the handler refuses for good → dead-letter topic, once
  the rest of the batch is written; the consumer carries on.
The handler must be idempotent: a redelivered batch is written again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.middlewares import AckPolicy
from pydantic import ValidationError

from pytake_contracts import Event, UnknownEventError, decode_event
from pytake_contracts.topics import DEAD_LETTERS, TopicSpec
from pytake_plumbing.logs import get_logger, log_context
from pytake_plumbing.messaging import TRANSIENT_ERRORS, EventPublisher, PermanentError, dead_letter_event, is_transient
from pytake_plumbing.settings import CommonSettings

log = get_logger(__name__)

BatchHandler = Callable[[Sequence[Event]], Awaitable[Any]]


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS) or is_transient(exc)


class BatchConsumer:
    def __init__(self, publisher: EventPublisher, service: str, handler: BatchHandler, *,
                 accepts: tuple[type[Event], ...] = (Event,), max_attempts: int = 5,
                 max_backoff_s: float = 5.0) -> None:
        self._publisher = publisher
        self._service = service
        self._handler = handler
        self._accepts = accepts
        self._max_attempts = max_attempts
        self._max_backoff_s = max_backoff_s
        self._outage_attempts = 0

    async def consume(self, records: Sequence[ConsumerRecord]) -> None:
        events: list[tuple[ConsumerRecord, Event]] = []
        rejected: list[tuple[ConsumerRecord, str, int]] = []
        for record in records:
            try:
                event = decode_event(record.value or b"")
            except (ValidationError, UnknownEventError, ValueError) as exc:
                rejected.append((record, f"undecodable: {exc}", 1))
                continue
            if isinstance(event, self._accepts):
                events.append((record, event))
        rejected += await self._write(events)
        for record, error, tries in rejected:
            await self._dead_letter(record, error, tries)
        refused = {id(record) for record, _, _ in rejected}
        for record, event in events:
            if id(record) not in refused:
                # Fields passed directly: binding a log context per event costs more than the write.
                log.info("event_handled", topic=record.topic, partition=record.partition, offset=record.offset,
                         correlation_id=event.correlation_id, event_id=str(event.event_id),
                         event_type=event.event_type,
                         organization_id=str(event.organization_id) if event.organization_id else None)

    async def _write(self, events: list[tuple[ConsumerRecord, Event]]) -> list[tuple[ConsumerRecord, str, int]]:
        if not events:
            return []
        try:
            await self._handler([event for _, event in events])
        except Exception as exc:
            if is_outage(exc):
                await self._pause(exc, len(events))
                raise  # NACK: the batch comes again once the store is back
            log.warning("batch_failed_writing_one_by_one", error=repr(exc)[:500], size=len(events))
            return await self._write_one_by_one(events)
        self._outage_attempts = 0
        return []

    async def _write_one_by_one(self, events: list[tuple[ConsumerRecord, Event]]
                                ) -> list[tuple[ConsumerRecord, str, int]]:
        refused = []
        for record, event in events:
            for attempt in range(1, self._max_attempts + 1):
                try:
                    with _context(event):
                        await self._handler([event])
                    break
                except Exception as exc:
                    if is_outage(exc):
                        await self._pause(exc, 1)
                        raise
                    if isinstance(exc, PermanentError) or attempt == self._max_attempts:
                        refused.append((record, f"{type(exc).__name__}: {exc}", attempt))
                        break
                    await asyncio.sleep(min(self._max_backoff_s, 0.1 * 2 ** attempt))
        return refused

    async def _pause(self, exc: BaseException, size: int) -> None:
        self._outage_attempts += 1
        log.warning("store_unavailable_will_retry", error=repr(exc)[:300], attempt=self._outage_attempts,
                    batch_size=size)
        await asyncio.sleep(min(self._max_backoff_s, 0.1 * 2 ** min(self._outage_attempts, 10)))

    async def _dead_letter(self, record: ConsumerRecord, error: str, tries: int) -> None:
        letter = dead_letter_event(record, consumer=self._service, error=error, attempts=tries)
        await self._publisher.publish(DEAD_LETTERS, letter, record.topic)


def _context(event: Event) -> Any:
    return log_context(
        correlation_id=event.correlation_id,
        event_id=str(event.event_id),
        event_type=event.event_type,
        organization_id=str(event.organization_id) if event.organization_id else None,
    )


def subscribe_batch(
    broker: KafkaBroker,
    settings: CommonSettings,
    specs: Sequence[TopicSpec],
    *,
    service: str,
    handler: BatchHandler,
    max_records: int = 1000,
    batch_timeout_ms: int = 200,
    accepts: tuple[type[Event], ...] = (Event,),
    max_attempts: int = 5,
    max_backoff_s: float = 5.0,
) -> BatchConsumer:
    consumer = BatchConsumer(EventPublisher(broker, settings), service, handler, accepts=accepts,
                             max_attempts=max_attempts, max_backoff_s=max_backoff_s)

    @broker.subscriber(
        *[settings.topic(spec) for spec in specs],
        group_id=settings.consumer_group(service),
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=batch_timeout_ms,
        title=f"{service}:batch",
        decoder=_raw_bodies,  # the contracts decode the bytes, once
    )
    async def on_batch(bodies: list[bytes], message: KafkaMessage) -> None:
        raw = message.raw_message
        await consumer.consume(raw if isinstance(raw, tuple) else (raw,))

    return consumer


async def _raw_bodies(message: Any) -> list[bytes]:
    return list(message.body)
