"""Kafka plumbing: topic creation from the catalog, dead letters and what counts as an outage
(consuming: pytake_plumbing.consumer; producing: pytake_plumbing.record_producer)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any
from uuid import UUID

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from pytake_contracts import DeadLettered, DeadLetterPayload
from pytake_contracts.topics import CATALOG, TopicSpec

from .logs import get_logger
from .settings import CommonSettings

log = get_logger(__name__)

# Errors that mean "a dependency is down": the record is retried until it comes back,
# which pauses the partition instead of losing or dead-lettering the record.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, ConnectionError, TimeoutError)


class PermanentError(Exception):
    """A record that can never be processed: it goes to the dead-letter topic at once."""


async def ensure_topics(settings: CommonSettings, specs: Iterable[TopicSpec] = CATALOG, replication: int = 1) -> None:
    """Create the catalog's topics (idempotent)."""
    admin = _admin(settings)
    existing = await _topic_names(admin)
    wanted = [
        NewTopic(settings.topic(spec), num_partitions=spec.partitions, replication_factor=replication,
                 config={"retention.ms": str(spec.retention_ms), **spec.config})
        for spec in specs
        if settings.topic(spec) not in existing
    ]
    if not wanted:
        return
    for name, created in admin.create_topics(wanted, operation_timeout=30).items():
        try:
            await asyncio.wrap_future(created)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # else another process won the race
                raise RuntimeError(f"topic {name} not created: {exc}") from exc


async def delete_namespace_topics(settings: CommonSettings) -> None:
    admin = _admin(settings)
    existing = await _topic_names(admin)
    doomed = [settings.topic(spec) for spec in CATALOG if settings.topic(spec) in existing]
    if doomed:
        for deleted in admin.delete_topics(doomed, operation_timeout=30).values():
            await asyncio.wrap_future(deleted)


def _admin(settings: CommonSettings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers, "client.id": "pytake-admin"})


async def _topic_names(admin: AdminClient) -> set[str]:
    metadata = await asyncio.to_thread(admin.list_topics, timeout=30)
    return set(metadata.topics)


def dead_letter_event(record: Any, *, consumer: str, error: str, attempts: int,
                      correlation_id: str | None = None, organization_id: UUID | None = None) -> DeadLettered:
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
        organization_id=organization_id,
        payload=DeadLetterPayload(
            origin_topic=record.topic,
            consumer=consumer,
            error=error[:2000],
            attempts=attempts,
            key=record.key.decode(errors="replace") if record.key else None,
            original=(record.value or b"").decode(errors="replace"),
        ),
    )


def is_outage(exc: BaseException) -> bool:
    """A dependency is down: wait and try again, never dead-letter."""
    return isinstance(exc, TRANSIENT_ERRORS) or is_transient(exc)


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
