"""A lean Kafka producer for hot paths (routing, webhook intake, sending).

The broker's publish goes through FastStream's middlewares (a tracing span per
record), which costs more than the work of a hot path itself. Events already carry their
trace context in the envelope; this producer copies it into the `traceparent`
header as well, so consumers' tracing middleware continues the same trace. Same
guarantees as the broker: acks from all in-sync replicas, idempotent retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from pytake_contracts import Event, encode_event
from pytake_contracts.topics import TopicSpec

from .settings import CommonSettings
from .tracing import current_trace_context

Outgoing = tuple[TopicSpec, Event, str]  # topic, event, record key


class RecordProducer:
    def __init__(self, settings: CommonSettings, client_id: str) -> None:
        self._settings = settings
        self._client_id = client_id
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        # Created here: aiokafka binds to the running event loop.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
        )
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, spec: TopicSpec, event: Event, key: str) -> None:
        await self.publish_all([(spec, event, key)])

    async def publish_all(self, items: Sequence[Outgoing]) -> None:
        """Send every record, then wait until Kafka acknowledged all of them."""
        if self._producer is None:
            raise ConnectionError("the record producer is not started")
        items = [(spec, _with_trace(event), key) for spec, event, key in items]
        producer = self._producer
        deliveries = [
            await producer.send(self._settings.topic(spec), encode_event(event), key=key.encode(),
                                      headers=_headers(event))
            for spec, event, key in items
        ]
        await asyncio.gather(*deliveries)


def _with_trace(event: Event) -> Event:
    if event.traceparent is not None:
        return event
    ctx = current_trace_context()
    return event.model_copy(update={"traceparent": ctx.get("traceparent"), "tracestate": ctx.get("tracestate")})


def _headers(event: Event) -> list[tuple[str, bytes]]:
    headers = [
        ("event_type", event.event_type.encode()),
        ("schema_version", str(event.schema_version).encode()),
        ("content-type", b"application/json"),
        ("correlation_id", event.correlation_id.encode()),
    ]
    if event.traceparent:
        headers.append(("traceparent", event.traceparent.encode()))
        if event.tracestate:
            headers.append(("tracestate", event.tracestate.encode()))
    return headers
