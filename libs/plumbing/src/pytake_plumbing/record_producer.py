"""PyTake's Kafka producer: every service publishes through it (events, outbox rows, dead letters).

librdkafka's (confluent-kafka), the library PyTake consumes with too (see record_source):
batching, compression and acknowledgements run in its own threads, outside the GIL, so a
record costs the event loop a few microseconds (benchmarks/kafka_clients.py: 6.4 µs of CPU
per record, aiokafka 24.7). Acks from all in-sync replicas; idempotent retries that never
duplicate or reorder.

Events carry their trace context in the envelope; this producer copies it into the
`traceparent` header as well, so the next hop continues the same trace.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from functools import partial
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from pytake_contracts import Event, encode_event
from pytake_contracts.topics import TopicSpec

from .settings import CommonSettings
from .tracing import current_trace_context

Outgoing = tuple[TopicSpec, Event, str]  # topic, event, record key


class EncodedRecord(NamedTuple):
    topic: str  # its name in this namespace
    key: str
    value: bytes
    headers: list[tuple[str, bytes]]
# How often delivery reports are served while records await them: the added latency at most.
POLL_INTERVAL_S = 0.001
# How long stopping waits for buffered records to be acknowledged.
FLUSH_TIMEOUT_S = 10.0


class RecordNotStored(Exception):
    """Kafka refused the record for good (unknown topic, record too large, ...)."""


class KafkaUnavailable(RecordNotStored, ConnectionError):
    """Kafka could not be reached in time: an outage, retried like any other."""


class RecordProducer:
    def __init__(self, settings: CommonSettings, client_id: str, *, linger_ms: int = 5,
                 delivery_timeout_ms: int = 120_000, max_record_bytes: int | None = None) -> None:
        self._config = {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            # After this a record is reported failed, never silently dropped.
            "message.timeout.ms": delivery_timeout_ms,
        }
        if max_record_bytes is not None:  # librdkafka refuses records over 1,000,000 bytes otherwise
            self._config["message.max.bytes"] = max_record_bytes
        self._settings = settings
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poll_handle: asyncio.TimerHandle | None = None
        self._topic_names: dict[str, str] = {}  # catalog name -> name in this namespace

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._producer = Producer(self._config)

    async def stop(self) -> None:
        producer = self._producer
        if producer is None:
            return
        self._producer = None
        self._cancel_poll()
        # Whatever is buffered gets its chance to land, and its waiters an answer, before we go.
        deadline = time.monotonic() + FLUSH_TIMEOUT_S
        while len(producer) and time.monotonic() < deadline:
            producer.poll(0)
            await asyncio.sleep(POLL_INTERVAL_S)
        producer.poll(0)

    async def publish(self, spec: TopicSpec, event: Event, key: str) -> None:
        await self.publish_all([(spec, event, key)])

    def publish_all(self, items: Sequence[Outgoing]) -> asyncio.Future[None]:
        """Send every record; the future is done once Kafka acknowledged all of them.

        A plain future, not a coroutine: a caller that waits with a deadline needs no task for it.
        """
        records = []
        for spec, event, key in items:
            event = _with_trace(event)
            records.append(EncodedRecord(self._topic(spec), key, encode_event(event), _headers(
                event.event_type, event.schema_version, event.correlation_id, event.traceparent, event.tracestate)))
        return self.publish_encoded(records)

    def publish_encoded(self, records: Sequence[EncodedRecord]) -> asyncio.Future[None]:
        """`publish_all` for events already encoded (an outbox holds them so), in this order."""
        producer, loop = self._producer, self._loop
        if producer is None or loop is None:
            raise KafkaUnavailable("the record producer is not started")
        deliveries = []
        try:
            for record in records:
                delivered = loop.create_future()
                try:
                    producer.produce(record.topic, record.value, record.key.encode(), headers=record.headers,
                                     on_delivery=partial(_settle, delivered))
                except BufferError as exc:  # the local queue is full: Kafka has been away for a while
                    delivered.cancel()
                    raise KafkaUnavailable("the producer's queue is full") from exc
                deliveries.append(delivered)
        finally:
            self._schedule_poll()  # records produced before a failure still get their reports served
        if not deliveries:
            done = loop.create_future()
            done.set_result(None)
            return done
        return deliveries[0] if len(deliveries) == 1 else asyncio.gather(*deliveries)

    async def reachable(self, timeout_s: float = 2.0) -> bool:
        """Kafka answers a metadata request (readiness)."""
        producer = self._producer
        if producer is None:
            return False
        try:
            await asyncio.to_thread(producer.list_topics, timeout=timeout_s)
        except KafkaException:
            return False
        return True

    def _topic(self, spec: TopicSpec) -> str:
        name = self._topic_names.get(spec.name)
        if name is None:
            name = self._topic_names[spec.name] = self._settings.topic(spec)
        return name

    def _schedule_poll(self) -> None:
        if self._poll_handle is None and self._loop is not None:
            self._poll_handle = self._loop.call_later(POLL_INTERVAL_S, self._poll)

    def _cancel_poll(self) -> None:
        if self._poll_handle is not None:
            self._poll_handle.cancel()
            self._poll_handle = None

    def _poll(self) -> None:
        """Serves delivery reports on the event loop itself, while any record awaits one.

        A polling thread would call back into Python once per record, and every call
        would wait for the GIL the event loop holds: reports would queue behind it.
        """
        self._poll_handle = None
        producer = self._producer
        if producer is None:
            return
        producer.poll(0)
        if len(producer):
            self._schedule_poll()


def _settle(delivered: asyncio.Future[None], error: KafkaError | None, _: Message) -> None:
    """Runs inside poll(), on the event loop."""
    if delivered.done():
        return
    if error is None:
        delivered.set_result(None)
    elif error.retriable() or error.code() in _OUTAGE_CODES:
        delivered.set_exception(KafkaUnavailable(error.str()))
    else:
        delivered.set_exception(RecordNotStored(error.str()))


_OUTAGE_CODES = {KafkaError._MSG_TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                 KafkaError.REQUEST_TIMED_OUT, KafkaError.NOT_ENOUGH_REPLICAS}


def _with_trace(event: Event) -> Event:
    if event.traceparent is not None:
        return event
    ctx = current_trace_context()
    if not ctx:  # no span to continue: nothing to copy in
        return event
    return event.model_copy(update={"traceparent": ctx.get("traceparent"), "tracestate": ctx.get("tracestate")})


def _headers(event_type: str, schema_version: int, correlation_id: str, traceparent: str | None,
             tracestate: str | None) -> list[tuple[str, bytes]]:
    headers = [
        ("event_type", event_type.encode()),
        ("schema_version", str(schema_version).encode()),
        ("content-type", b"application/json"),
        ("correlation_id", correlation_id.encode()),
    ]
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
        if tracestate:
            headers.append(("tracestate", tracestate.encode()))
    return headers


def encoded_record(topic: str, key: str, event: dict[str, Any]) -> EncodedRecord:
    """A record of an event already encoded as a JSON object (an outbox row), with its headers."""
    return EncodedRecord(topic, key, json.dumps(event, separators=(",", ":")).encode(), _headers(
        event["event_type"], event["schema_version"], event.get("correlation_id") or "",
        event.get("traceparent"), event.get("tracestate")))
