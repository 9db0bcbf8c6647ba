"""Kafka entrypoints: the routing consumer (in batches) and registry-change invalidation."""

from __future__ import annotations

import asyncio
from typing import Any

from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from pytake_contracts import (
    Event,
    InboundMessageReceived,
    RegistryChanged,
    StatusReceived,
    UnknownEventError,
    decode_event,
)
from pytake_contracts.topics import DEAD_LETTERS, REGISTRY_CHANGES, WEBHOOK_INBOUND
from pytake_plumbing.backoff import OUTAGE, Backoff
from pytake_plumbing.kafka_loop import BatchLoop
from pytake_plumbing.logs import get_logger
from pytake_plumbing.messaging import TRANSIENT_ERRORS, dead_letter_event, is_transient, subscribe
from pytake_plumbing.settings import CommonSettings

from ..service.routing import BatchPublisher, Outgoing, RouteCache, on_registry_changed, routed

SERVICE = "router"
ROUTED_KINDS = (InboundMessageReceived, StatusReceived)
log = get_logger(__name__)


def register(broker: KafkaBroker, settings: CommonSettings, cache: RouteCache, publisher: BatchPublisher, *,
             max_records: int = 500, max_attempts: int = 5, backoff: Backoff = OUTAGE) -> BatchLoop:
    """`publisher` sends the routed records (a lean producer: see pytake_plumbing.record_producer).
    Returns the consumer of the inbound topic, for the app to start and stop."""
    router = BatchRouter(cache, publisher, max_attempts=max_attempts, backoff=backoff)

    async def invalidate(event: Event) -> None:
        assert isinstance(event, RegistryChanged)
        on_registry_changed(event, cache)

    # Every replica hears every change (a consumer group of its own).
    subscribe(broker, settings, [REGISTRY_CHANGES], service=SERVICE, handler=invalidate,
              accepts=(RegistryChanged,), broadcast=True)
    # A backlog comes in batches of up to `max_records`: each batch costs two round trips (the
    # publish acks, the offset commit), whatever its size.
    return BatchLoop(settings, [WEBHOOK_INBOUND], group=SERVICE, handler=router.handle, max_records=max_records)


class BatchRouter:
    """Routes a batch of webhook records and publishes the results together.

    All or nothing: if a dependency fails (database, Kafka), the batch is redelivered
    from its first record, after a backoff (duplicates are possible; consumers
    deduplicate by wamid). A record that keeps failing for another reason is
    dead-lettered after `max_attempts`, so it cannot block its partition.
    """

    def __init__(self, cache: RouteCache, publisher: BatchPublisher, *, max_attempts: int,
                 backoff: Backoff) -> None:
        self._cache = cache
        self._publisher = publisher
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._attempts: dict[tuple[str, int, int], int] = {}

    async def handle(self, records: Any) -> None:
        records = records if isinstance(records, tuple | list) else (records,)
        outgoing: list[Outgoing] = []
        handled: list[tuple[Event, Any]] = []
        for record in records:
            try:
                event = decode_event(record.value or b"")
            except (ValidationError, UnknownEventError, ValueError) as exc:
                outgoing.append(self._dead_letter(record, f"undecodable: {exc}", 1))
                continue
            if not isinstance(event, ROUTED_KINDS):
                continue  # another consumer's event on a shared topic
            result = await self._route(event, record)
            if result is not None:
                outgoing.append(result)
            handled.append((event, record))
        await self._publisher.publish_all(outgoing)
        log.debug("batch_routed", records=len(records), published=len(outgoing))
        for event, record in handled:
            if self._attempts:
                self._attempts.pop((record.topic, record.partition, record.offset), None)
            # The event's ids as plain fields: binding context variables per record costs more than routing.
            log.info("event_handled", topic=record.topic, partition=record.partition, offset=record.offset,
                     **_event_fields(event))

    async def _route(self, event: Event, record: Any) -> Outgoing | None:
        try:
            return await routed(event, self._cache)
        except Exception as exc:
            where = (record.topic, record.partition, record.offset)
            tries = self._attempts[where] = self._attempts.get(where, 0) + 1
            transient = isinstance(exc, TRANSIENT_ERRORS) or is_transient(exc)
            if not transient and tries >= self._max_attempts:
                self._attempts.pop(where, None)
                return self._dead_letter(record, f"{type(exc).__name__}: {exc}", tries)
            log.warning("handler_failed_will_retry", error=repr(exc)[:500], attempt=tries, transient=transient,
                        **_event_fields(event))
            await asyncio.sleep(self._backoff.delay(tries))
            raise  # the loop delivers the batch again from its first record

    @staticmethod
    def _dead_letter(record: Any, error: str, tries: int) -> Outgoing:
        event = dead_letter_event(record, consumer=SERVICE, error=error, attempts=tries)
        return DEAD_LETTERS, event, record.topic


def _event_fields(event: Event) -> dict[str, str]:
    fields = {"correlation_id": event.correlation_id, "event_id": str(event.event_id),
              "event_type": event.event_type}
    if event.organization_id:
        fields["organization_id"] = str(event.organization_id)
    return fields
