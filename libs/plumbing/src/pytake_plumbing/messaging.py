"""Kafka plumbing: broker factory, topic creation from the catalog, typed publish and
a consumer wrapper that retries outages and dead-letters poison records."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any
from uuid import uuid4

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.middlewares import AckPolicy
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError

from pytake_contracts import DeadLettered, DeadLetterPayload, Event, UnknownEventError, decode_event, encode_event
from pytake_contracts.topics import CATALOG, DEAD_LETTERS, TopicSpec

from .backoff import OUTAGE, Backoff
from .logs import get_logger, log_context
from .settings import CommonSettings
from .tracing import current_trace_context

log = get_logger(__name__)

# Errors that mean "a dependency is down": the record is retried until it comes back,
# which pauses the partition instead of losing or dead-lettering the record.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, ConnectionError, TimeoutError)


class PermanentError(Exception):
    """A record that can never be processed: it goes to the dead-letter topic at once."""


def make_broker(
    settings: CommonSettings, service: str, *, tracer_provider: TracerProvider | None = None, **kwargs: Any
) -> KafkaBroker:
    middlewares = [KafkaTelemetryMiddleware(tracer_provider=tracer_provider)] if tracer_provider else []
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=f"pytake-{service}",
        # Nothing counts as published until every in-sync replica has it, and
        # producer retries never duplicate or reorder a record.
        acks="all",
        enable_idempotence=True,
        allow_auto_create_topics=False,
        middlewares=middlewares,
        logger=get_logger(f"pytake.{service}.kafka"),
        # FastStream's own per-message lines go to debug; PyTake logs each handled
        # event itself, with its correlation id.
        log_level=logging.DEBUG,
        **kwargs,
    )


async def ensure_topics(settings: CommonSettings, specs: Iterable[TopicSpec] = CATALOG, replication: int = 1) -> None:
    """Create the catalog's topics (idempotent)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, client_id="pytake-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=settings.topic(spec),
                num_partitions=spec.partitions,
                replication_factor=replication,
                topic_configs={"retention.ms": str(spec.retention_ms), **spec.config},
            )
            for spec in specs
            if settings.topic(spec) not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another process won the race
    finally:
        await admin.close()


async def delete_namespace_topics(settings: CommonSettings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers, client_id="pytake-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [settings.topic(spec) for spec in CATALOG if settings.topic(spec) in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


class EventPublisher:
    """Publishes contract events with their routing key and metadata headers."""

    def __init__(self, broker: KafkaBroker, settings: CommonSettings) -> None:
        self._broker = broker
        self._settings = settings

    async def publish(self, spec: TopicSpec, event: Event, key: str) -> None:
        if event.traceparent is None:
            ctx = current_trace_context()
            event = event.model_copy(update={"traceparent": ctx.get("traceparent"), "tracestate": ctx.get("tracestate")})
        await self._broker.publish(
            encode_event(event),
            self._settings.topic(spec),
            key=key.encode(),
            headers={
                "event_type": event.event_type,
                "schema_version": str(event.schema_version),
                "content-type": "application/json",
            },
            correlation_id=event.correlation_id,
        )

    async def publish_all(self, items: Sequence[tuple[TopicSpec, Event, str]]) -> None:
        """Publish concurrently and return only when every record is acknowledged."""
        await asyncio.gather(*(self.publish(spec, event, key) for spec, event, key in items))


Handler = Callable[[Event], Awaitable[None]]


def dead_letter_event(record: Any, *, consumer: str, error: str, attempts: int,
                      correlation_id: str | None = None) -> DeadLettered:
    """The dead-letter event for a Kafka record `consumer` gave up on (and the log line saying so).

    The correlation id is the given one, else the record's `correlation_id` header.
    """
    if correlation_id is None:
        for name, value in record.headers or ():
            if name == "correlation_id" and value:
                correlation_id = bytes(value).decode(errors="replace")
    log.error("dead_lettered", origin_topic=record.topic, offset=record.offset, error=error[:500])
    return DeadLettered(
        correlation_id=correlation_id or "unknown",
        producer=consumer,
        payload=DeadLetterPayload(
            origin_topic=record.topic,
            consumer=consumer,
            error=error[:2000],
            attempts=attempts,
            key=record.key.decode(errors="replace") if record.key else None,
            original=(record.value or b"").decode(errors="replace"),
        ),
    )


def subscribe(
    broker: KafkaBroker,
    settings: CommonSettings,
    specs: Sequence[TopicSpec],
    *,
    service: str,
    handler: Handler,
    accepts: tuple[type[Event], ...] = (Event,),
    max_attempts: int = 5,
    backoff: Backoff = OUTAGE,
    broadcast: bool = False,
) -> None:
    """Register `handler` for typed events on `specs`, one record at a time per partition.

    - undecodable records and PermanentError → dead-letter topic, then committed;
    - dependency outages (TRANSIENT_ERRORS) → retried with backoff until they pass;
    - other errors → retried `max_attempts` times, then dead-lettered.

    `broadcast=True` gives this process a consumer group of its own, reading from the
    latest offset: every replica sees every record (cache invalidation).
    """
    publisher = EventPublisher(broker, settings)
    attempts: dict[tuple[str, int, int], int] = {}
    topics = [settings.topic(spec) for spec in specs]

    async def dead_letter(message: KafkaMessage, error: str, tries: int) -> None:
        record = message.raw_message
        event = dead_letter_event(record, consumer=service, error=error, attempts=tries,
                                  correlation_id=message.correlation_id)
        await publisher.publish(DEAD_LETTERS, event, record.topic)

    group_id = settings.consumer_group(service)
    if broadcast:
        group_id = f"{group_id}.{uuid4().hex[:12]}"

    @broker.subscriber(
        *topics,
        group_id=group_id,
        auto_offset_reset="latest" if broadcast else "earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        # A broadcast group has one member, named afresh at each start: nothing to keep static.
        **settings.group_membership(group_id, static=not broadcast),
        title=f"{service}:{','.join(spec.name for spec in specs)}",
        decoder=_raw_body,  # the contracts decode the bytes, once
    )
    async def on_record(body: bytes, message: KafkaMessage) -> None:
        record = message.raw_message
        where = (record.topic, record.partition, record.offset)
        try:
            event = decode_event(body)
        except (ValidationError, UnknownEventError, ValueError) as exc:
            await dead_letter(message, f"undecodable: {exc}", 1)
            return
        if not isinstance(event, accepts):
            return  # another consumer's event on a shared topic
        with log_context(
            correlation_id=event.correlation_id,
            event_id=str(event.event_id),
            event_type=event.event_type,
            organization_id=str(event.organization_id) if event.organization_id else None,
        ):
            try:
                await handler(event)
            except PermanentError as exc:
                await dead_letter(message, f"{type(exc).__name__}: {exc}", attempts.pop(where, 0) + 1)
                return
            except Exception as exc:
                tries = attempts[where] = attempts.get(where, 0) + 1
                transient = isinstance(exc, TRANSIENT_ERRORS) or is_transient(exc)
                if not transient and tries >= max_attempts:
                    attempts.pop(where, None)
                    await dead_letter(message, f"{type(exc).__name__}: {exc}", tries)
                    return
                log.warning("handler_failed_will_retry", error=repr(exc)[:500], attempt=tries, transient=transient)
                await asyncio.sleep(backoff.delay(tries))
                raise  # NACK: the record is redelivered, partition order kept
            attempts.pop(where, None)
            log.info("event_handled", topic=record.topic, partition=record.partition, offset=record.offset)


async def _raw_body(message: Any) -> bytes:
    return bytes(message.body)


def is_transient(exc: BaseException) -> bool:
    """Driver errors that wrap a lost connection (SQLAlchemy, PyMongo) count as outages."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TRANSIENT_ERRORS):
            return True
        if getattr(current, "connection_invalidated", False):
            return True
        name = type(current).__name__
        if name in {"AutoReconnect", "ServerSelectionTimeoutError", "NetworkTimeout", "ConnectionFailure",
                    "InterfaceError", "CannotConnectNowError", "ConnectionDoesNotExistError"}:
            return True
        current = current.__cause__ or current.__context__
    return False
