"""A batch variant of `pytake_plumbing.messaging.subscribe`: many records per handler call.

- A batch is handed to the handler in chunks (one list each, up to `write_chunk` events),
  the next chunk decoded while the previous one is written; its offsets are committed only
  after every chunk is written (see kafka_loop), so nothing is lost if the process dies.
- Dependency outages (the store is down) → wait with backoff, then the whole batch is
  redelivered (the loop rewinds every partition of the batch): the consumer pauses, not loses.
- Undecodable records and events the handler refuses for good → dead-letter topic, once
  the rest of the batch is written; the consumer carries on.
The handler must be idempotent: a redelivered batch is written again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from pytake_contracts import Event, UnknownEventError, decode_event
from pytake_contracts.topics import DEAD_LETTERS, TopicSpec

from .backoff import OUTAGE, Backoff
from .kafka_loop import BatchLoop, RecordSource
from .logs import get_logger, log_context
from .messaging import TRANSIENT_ERRORS, EventPublisher, PermanentError, dead_letter_event, is_transient
from .settings import CommonSettings

log = get_logger(__name__)

BatchHandler = Callable[[Sequence[Event]], Awaitable[Any]]
# Told, once per batch, which events were handled (for per-event log lines written in one go).
HandledHook = Callable[[Sequence[tuple[ConsumerRecord, Event]]], None]


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, TRANSIENT_ERRORS) or is_transient(exc)


class BatchConsumer:
    """`write_chunk` records go to the handler per call, and up to `writes_in_flight` calls run at
    once: the next chunk is decoded while the store writes the previous one. The batch is
    acknowledged only when every chunk is written."""

    def __init__(self, publisher: EventPublisher, service: str, handler: BatchHandler, *,
                 accepts: tuple[type[Event], ...] = (Event,), max_attempts: int = 5,
                 backoff: Backoff = OUTAGE, write_chunk: int = 10_000, writes_in_flight: int = 1,
                 on_handled: HandledHook | None = None) -> None:
        self._publisher = publisher
        self._service = service
        self._handler = handler
        self._accepts = accepts
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._write_chunk = write_chunk
        self._writes_in_flight = writes_in_flight
        self._outage_attempts = 0
        self._on_handled = on_handled

    async def consume(self, records: Sequence[ConsumerRecord]) -> None:
        written: list[tuple[ConsumerRecord, Event]] = []
        rejected: list[tuple[ConsumerRecord, str, int]] = []
        outcomes = await self._write_chunks(records, written, rejected)
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            failure = next((f for f in failures if is_outage(f)), failures[0])
            if is_outage(failure):
                await self._pause(failure, len(records))
            raise failure  # the batch comes again (chunks already written are skipped by key)
        self._outage_attempts = 0
        rejected += [refusal for outcome in outcomes if isinstance(outcome, list) for refusal in outcome]
        for record, error, tries in rejected:
            await self._dead_letter(record, error, tries)
        if self._on_handled is not None:
            refused = {id(record) for record, _, _ in rejected}
            self._on_handled([(record, event) for record, event in written if id(record) not in refused])

    async def _write_chunks(self, records: Sequence[ConsumerRecord], written: list[tuple[ConsumerRecord, Event]],
                            rejected: list[tuple[ConsumerRecord, str, int]]) -> list[Any]:
        """Decode and write chunk after chunk; stops starting writes once one has failed.
        Returns each write's outcome: the events it refused for good, or its exception."""
        slots = asyncio.Semaphore(self._writes_in_flight)
        writes: list[asyncio.Task[list[tuple[ConsumerRecord, str, int]]]] = []
        try:
            for first in range(0, len(records), self._write_chunk):
                events = self._decode(records[first:first + self._write_chunk], rejected)
                if not events:
                    continue
                await slots.acquire()
                if any(write.done() and not write.cancelled() and write.exception() for write in writes):
                    slots.release()
                    break  # the batch fails and comes again: no use writing the rest now
                writes.append(asyncio.create_task(self._write_in_slot(events, slots)))
                written += events
                await asyncio.sleep(0)  # let the write go out before decoding the next chunk
            return list(await asyncio.gather(*writes, return_exceptions=True))
        except BaseException:
            for write in writes:  # cancelled (shutting down): no write outlives its batch
                write.cancel()
            raise

    def _decode(self, records: Sequence[ConsumerRecord],
                rejected: list[tuple[ConsumerRecord, str, int]]) -> list[tuple[ConsumerRecord, Event]]:
        events: list[tuple[ConsumerRecord, Event]] = []
        for record in records:
            try:
                event = decode_event(record.value or b"")
            except (ValidationError, UnknownEventError, ValueError) as exc:
                rejected.append((record, f"undecodable: {exc}", 1))
                continue
            if isinstance(event, self._accepts):
                events.append((record, event))
        return events

    async def _write_in_slot(self, events: list[tuple[ConsumerRecord, Event]],
                             slots: asyncio.Semaphore) -> list[tuple[ConsumerRecord, str, int]]:
        try:
            return await self._write(events)
        finally:
            slots.release()

    async def _write(self, events: list[tuple[ConsumerRecord, Event]]) -> list[tuple[ConsumerRecord, str, int]]:
        """Returns the events refused for good; raises on an outage."""
        try:
            await self._handler([event for _, event in events])
        except Exception as exc:
            if is_outage(exc):
                raise
            log.warning("batch_failed_writing_one_by_one", error=repr(exc)[:500], size=len(events))
            return await self._write_one_by_one(events)
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
                        raise
                    if isinstance(exc, PermanentError) or attempt == self._max_attempts:
                        refused.append((record, f"{type(exc).__name__}: {exc}", attempt))
                        break
                    await asyncio.sleep(self._backoff.delay(attempt))
        return refused

    async def _pause(self, exc: BaseException, size: int) -> None:
        self._outage_attempts += 1
        log.warning("store_unavailable_will_retry", error=repr(exc)[:300], attempt=self._outage_attempts,
                    batch_size=size)
        await asyncio.sleep(self._backoff.delay(self._outage_attempts))

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
    accepts: tuple[type[Event], ...] = (Event,),
    max_attempts: int = 5,
    backoff: Backoff = OUTAGE,
    write_chunk: int = 10_000,
    writes_in_flight: int = 1,
    on_handled: HandledHook | None = None,
    source: RecordSource | None = None,
) -> BatchLoop:
    """The service's consumer of `specs`, started and stopped with its app (on_started, on_stopping).
    `broker` publishes the dead letters; `source` stands in for Kafka in unit tests."""
    consumer = BatchConsumer(EventPublisher(broker, settings), service, handler, accepts=accepts,
                             max_attempts=max_attempts, backoff=backoff, write_chunk=write_chunk,
                             writes_in_flight=writes_in_flight, on_handled=on_handled)
    return BatchLoop(settings, specs, group=service, handler=consumer.consume, max_records=max_records,
                     source=source)
