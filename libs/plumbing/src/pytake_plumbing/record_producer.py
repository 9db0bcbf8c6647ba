"""A lean Kafka producer for hot paths (routing, webhook intake, sending).

The broker's publish goes through FastStream's middlewares (a tracing span per
record), which costs more than the work of a hot path itself. This producer is
librdkafka's (confluent-kafka): batching, compression and acknowledgements run in
its own threads, outside the GIL, so a record costs the event loop a few
microseconds instead of aiokafka's hundred. Same guarantees as the broker: acks
from all in-sync replicas, idempotent retries that never duplicate or reorder.

Events already carry their trace context in the envelope; this producer copies it
into the `traceparent` header as well, so consumers' tracing middleware continues
the same trace.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from functools import partial

from confluent_kafka import KafkaError, Message, Producer

from pytake_contracts import Event, encode_event
from pytake_contracts.topics import TopicSpec

from .settings import CommonSettings
from .tracing import current_trace_context

Outgoing = tuple[TopicSpec, Event, str]  # topic, event, record key


class RecordNotStored(Exception):
    """Kafka refused the record for good (unknown topic, record too large, ...)."""


class KafkaUnavailable(RecordNotStored, ConnectionError):
    """Kafka could not be reached in time: an outage, retried like any other."""


class RecordProducer:
    def __init__(self, settings: CommonSettings, client_id: str, *, linger_ms: int = 5,
                 delivery_timeout_ms: int = 120_000) -> None:
        self._config = {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": linger_ms,
            # After this a record is reported failed, never silently dropped.
            "message.timeout.ms": delivery_timeout_ms,
        }
        self._settings = settings
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None
        self._reports: list[tuple[asyncio.Future[None], KafkaError | None]] = []

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._producer = Producer(self._config)
        self._stopping.clear()
        # Delivery reports are served by poll(); a thread of its own keeps them off the event loop.
        self._poller = threading.Thread(target=self._poll_until_stopped, name=f"{self._config['client.id']}-poll",
                                        daemon=True)
        self._poller.start()

    async def stop(self) -> None:
        producer, poller = self._producer, self._poller
        if producer is None or poller is None:
            return
        self._producer = None
        self._stopping.set()
        await asyncio.get_running_loop().run_in_executor(None, poller.join)

    async def publish(self, spec: TopicSpec, event: Event, key: str) -> None:
        await self.publish_all([(spec, event, key)])

    def publish_all(self, items: Sequence[Outgoing]) -> asyncio.Future[None]:
        """Send every record; the future is done once Kafka acknowledged all of them.

        A plain future, not a coroutine: a caller that waits with a deadline needs no task for it.
        """
        producer, loop = self._producer, self._loop
        if producer is None or loop is None:
            raise KafkaUnavailable("the record producer is not started")
        deliveries = []
        for spec, event, key in items:
            event = _with_trace(event)
            delivered = loop.create_future()
            try:
                producer.produce(self._settings.topic(spec), encode_event(event), key.encode(),
                                 headers=_headers(event), on_delivery=partial(self._delivered, delivered))
            except BufferError as exc:  # the local queue is full: Kafka has been away for a while
                delivered.cancel()
                raise KafkaUnavailable("the producer's queue is full") from exc
            deliveries.append(delivered)
        return asyncio.gather(*deliveries)

    def _poll_until_stopped(self) -> None:
        producer, loop = self._producer, self._loop
        assert producer is not None and loop is not None
        while not self._stopping.is_set():
            producer.poll(0.1)
            self._hand_over(loop)
        # Whatever is buffered gets its chance to land, and its waiters an answer, before the thread ends.
        producer.flush(10.0)
        self._hand_over(loop)

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        # One wake-up of the event loop per poll, for every report it served (a produce
        # response acknowledges many records at once), not one per record.
        reports, self._reports = self._reports, []
        if reports:
            loop.call_soon_threadsafe(_settle_all, reports)

    def _delivered(self, delivered: asyncio.Future[None], error: KafkaError | None, _: Message) -> None:
        """Runs on the poll thread, inside poll() or flush(): collect the outcome for the event loop."""
        self._reports.append((delivered, error))


def _settle_all(reports: list[tuple[asyncio.Future[None], KafkaError | None]]) -> None:
    for delivered, error in reports:
        if delivered.done():
            continue
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
