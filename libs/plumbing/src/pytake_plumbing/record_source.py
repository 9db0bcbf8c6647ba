"""Kafka records in, for the consumer runtime (pytake_plumbing.consumer): librdkafka's consumer,
the library PyTake produces with too (see record_producer).

Why librdkafka: fetching, decompression and record parsing run in C, in threads of its own, and
so do offset commits. `benchmarks/kafka_clients.py` measured a record at 1.9 µs of CPU to consume
(aiokafka 3.8) and 6.4 µs to produce (aiokafka 24.7), an idle consumer at 0.09 % of a core (0.24).

- Offsets: the runtime stores them (`commit`, local and cheap) once the work is durable; librdkafka
  commits what is stored every 100 ms, when partitions are revoked and when the consumer closes.
- Fetching: `poll` waits for the first record, `consume(..., 0)` takes what else has arrived:
  a lone record is handed over at once (librdkafka's `consume` with a timeout would wait for
  the batch to fill), a backlog in batches.
- Every call into librdkafka's consumer runs in its one worker thread: called from the event loop
  while a poll was under way, even storing an offset or reading the assignment waited for the
  poll, up to its timeout (the whole pipeline waited 0.5-1 s per hop). Stores, pauses and resumes
  are queued and applied by the worker between polls, which last at most `POLL_SLICE_S`.
- A rebalance callback librdkafka makes from the worker runs the runtime's (async) listener on the
  event loop and waits for it, then applies what it queued: a revocation waits for the work in
  hand, and its offsets are stored, and committed, before the partitions go.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message
from confluent_kafka import TopicPartition as _KafkaPartition

from .logs import get_logger

log = get_logger(__name__)

# How often librdkafka commits the stored offsets: the most a crash can make the next owner redo.
AUTO_COMMIT_INTERVAL_MS = 100
# The longest a queued store, pause or resume waits for the worker.
POLL_SLICE_S = 0.05


class Partition(NamedTuple):
    topic: str
    partition: int


class Record(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]
    timestamp: int  # ms since the epoch


class KafkaUnreachable(Exception):
    """Kafka did not answer (fetching, or asking for offsets): waited out with the shared backoff."""


class RebalanceListener(Protocol):
    async def on_partitions_revoked(self, revoked: list[Partition]) -> None: ...
    async def on_partitions_assigned(self, assigned: list[Partition]) -> None: ...


class KafkaRecordSource:
    """`config` is librdkafka's (bootstrap.servers, group.id, client.id, session settings...)."""

    def __init__(self, config: dict[str, Any], *, commits: bool = True) -> None:
        self._config = {
            **config,
            "enable.auto.commit": commits,
            "enable.auto.offset.store": False,
            "auto.commit.interval.ms": AUTO_COMMIT_INTERVAL_MS,
            # What librdkafka prefetches per partition: a backlog waits in Kafka, not in memory.
            "queued.max.messages.kbytes": 8192,
        }
        self._consumer: Consumer | None = None
        self._topics: list[str] = []
        self._listener: RebalanceListener | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="kafka-consumer")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queued: list[Callable[[Consumer], None]] = []  # appended on the loop, applied by the worker

    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None:
        self._topics, self._listener = list(topics), listener

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._consumer = Consumer(self._config, logger=None)
        if self._topics:
            self._consumer.subscribe(self._topics, on_assign=self._assigned, on_revoke=self._revoked,
                                     on_lost=self._revoked)

    async def stop(self) -> None:
        if self._consumer is not None:
            # Closing revokes what is held (the listener runs) and commits the stored offsets.
            consumer = self._consumer

            def close() -> None:
                self._apply_queued(consumer)
                consumer.close()

            await self._in_worker(close)
            self._consumer = None
        self._worker.shutdown(wait=False)

    def assign(self, offsets: dict[Partition, int]) -> None:
        assigned = [_KafkaPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]
        self._queue(lambda consumer: consumer.assign(assigned))

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Partition, list[Record]]:
        messages = await self._in_worker(self._fetch, timeout_ms / 1000, max_records)
        batches: dict[Partition, list[Record]] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaException(error)
                # Brokers away, a partition moving: librdkafka retries by itself.
                log.warning("kafka_consumer_error", error=error.str())
                continue
            topic, partition = message.topic(), message.partition()
            batches.setdefault(Partition(topic, partition), []).append(Record(
                topic, partition, message.offset(), message.key(), message.value(), message.headers() or (),
                message.timestamp()[1]))
        return batches

    def _fetch(self, timeout_s: float, max_records: int) -> list[Message]:
        consumer = self._live()
        deadline = time.monotonic() + timeout_s
        while True:
            self._apply_queued(consumer)
            first = consumer.poll(max(0.0, min(POLL_SLICE_S, deadline - time.monotonic())))
            if first is not None:
                return [first, *consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]
            if time.monotonic() >= deadline:
                return []

    async def commit(self, offsets: dict[Partition, int]) -> None:
        stored = [_KafkaPartition(tp.topic, tp.partition, offset) for tp, offset in offsets.items()]
        self._queue(lambda consumer: consumer.store_offsets(offsets=stored))

    def _queue(self, call: Callable[[Consumer], None]) -> None:
        self._queued.append(call)

    def _apply_queued(self, consumer: Consumer) -> None:
        while self._queued:
            call = self._queued.pop(0)
            try:
                call(consumer)
            except KafkaException as exc:
                # A partition no longer held (a rebalance under way): its next owner reads it again.
                log.warning("kafka_consumer_call_failed", error=str(exc)[:300])

    def pause(self, *partitions: Partition) -> None:
        if partitions:
            paused = [_KafkaPartition(tp.topic, tp.partition) for tp in partitions]
            self._queue(lambda consumer: consumer.pause(paused))

    def resume(self, *partitions: Partition) -> None:
        if partitions:
            resumed = [_KafkaPartition(tp.topic, tp.partition) for tp in partitions]
            self._queue(lambda consumer: consumer.resume(resumed))

    async def position(self, partition: Partition) -> int:
        def position() -> int:
            (found,) = self._live().position([_KafkaPartition(partition.topic, partition.partition)])
            return int(found.offset)

        return await self._in_worker(position)

    async def end_offsets(self, partitions: list[Partition]) -> dict[Partition, int]:
        consumer = self._live()

        def ends() -> dict[Partition, int]:
            return {tp: consumer.get_watermark_offsets(_KafkaPartition(tp.topic, tp.partition), timeout=10)[1]
                    for tp in partitions}

        return await self._in_worker(ends)

    async def offsets_for_times(self, timestamps: dict[Partition, int]) -> dict[Partition, int | None]:
        """The first offset at or after each time; None where every record is older."""
        consumer = self._live()
        asked = [_KafkaPartition(tp.topic, tp.partition, ms) for tp, ms in timestamps.items()]
        found = await self._in_worker(consumer.offsets_for_times, asked, 10)
        return {Partition(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in found}

    async def _in_worker(self, call: Any, *args: Any) -> Any:
        assert self._loop is not None
        try:
            return await self._loop.run_in_executor(self._worker, call, *args)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.fatal():
                raise
            raise KafkaUnreachable(str(exc)) from exc

    def _live(self) -> Consumer:
        if self._consumer is None:
            raise KafkaUnreachable("the consumer is not started")
        return self._consumer

    # Called by librdkafka from inside poll or close, in the worker thread.

    def _assigned(self, _: Consumer, partitions: list[_KafkaPartition]) -> None:
        self._run_listener("on_partitions_assigned", partitions)

    def _revoked(self, _: Consumer, partitions: list[_KafkaPartition]) -> None:
        self._run_listener("on_partitions_revoked", partitions)

    def _run_listener(self, method: str, partitions: list[_KafkaPartition]) -> None:
        if self._listener is None or self._loop is None:
            return
        call = getattr(self._listener, method)([Partition(tp.topic, tp.partition) for tp in partitions])
        asyncio.run_coroutine_threadsafe(call, self._loop).result()
        if self._consumer is not None:
            self._apply_queued(self._consumer)  # the offsets stored for partitions that go
