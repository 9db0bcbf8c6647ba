"""Kafka for tests and benchmarks: put raw records on topics, read topics back, look at consumer groups.

On librdkafka (confluent-kafka), the one Kafka client PyTake uses (see pytake_plumbing.record_source).
Its calls block, so each runs in a worker thread; the event loop stays free for what is under test.

- `Writer`: acks=all, every send awaited until Kafka acknowledged it (`send`, `send_all`).
- `TopicReader`: every partition of some topics assigned by hand (no group, nothing committed),
  from the beginning, the end or a time; `poll` takes what is there now, `read_to_end` everything
  up to the end offsets taken first. `read_topics` does that once.
- `Admin`: end offsets, a group's committed offsets and state, and committing for a group from outside.

Records are `pytake_plumbing.record_source.Record`s (topic, partition, offset, key, value, headers,
timestamp in ms), partitions `Partition(topic, partition)`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from confluent_kafka import (
    OFFSET_BEGINNING,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import Consumer as _Consumer
from confluent_kafka import TopicPartition as _KafkaPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from pytake_plumbing.record_source import Partition, Record

__all__ = ["Admin", "ConsumerGroupState", "Outgoing", "Partition", "Record", "TopicReader", "Writer",
           "read_topics"]

TIMEOUT_S = 30.0  # how long a metadata or offset request, a delivery or a read to the end may take


class Outgoing(NamedTuple):
    """A record to write: what `Writer.send_all` takes."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = ()


def _record(message: Message) -> Record:
    """librdkafka's message as the Record the runtime and the fakes use."""
    return Record(message.topic(), message.partition(), message.offset(), message.key(), message.value(),
                  message.headers() or (), message.timestamp()[1])


class Writer:
    """A producer whose sends return once Kafka acknowledged them (acks=all), in one worker thread."""

    def __init__(self, bootstrap: str, config: dict[str, Any] | None = None) -> None:
        # `config`: more librdkafka settings (linger.ms, batch.size, ...), overriding these.
        self._producer = Producer({"bootstrap.servers": bootstrap, "client.id": "pytake-devstack",
                                   "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                                   "message.timeout.ms": int(TIMEOUT_S * 1000), **(config or {})})
        # One thread: sends run one at a time, so the flush that ends one waits for its records only.
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="kafka-writer")

    async def __aenter__(self) -> Writer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, topic: str, value: bytes | None, *, key: bytes | None = None,
                   headers: Sequence[tuple[str, bytes]] = ()) -> Record:
        """One record; returns it as stored (its partition and offset)."""
        (stored,) = await self._run([Outgoing(topic, value, key, headers)], True)
        return stored._replace(headers=tuple(headers))  # delivery reports leave the headers out

    async def send_all(self, records: Iterable[Outgoing]) -> int:
        """Many records, in this order per partition; returns how many once all are acknowledged."""
        return await self._run(list(records), False)

    async def close(self) -> None:
        """Waits for whatever is still buffered (nothing, after awaited sends)."""
        await asyncio.get_running_loop().run_in_executor(self._worker, self._producer.flush, TIMEOUT_S)
        self._worker.shutdown(wait=False)

    async def _run(self, records: list[Outgoing], keep: bool) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, self._produce, records, keep)

    def _produce(self, records: list[Outgoing], keep: bool) -> Any:
        stored: list[Record] = []
        errors: list[KafkaError] = []

        def delivered(error: KafkaError | None, message: Message) -> None:  # runs in poll/flush, here
            if error is not None:
                errors.append(error)
            elif keep:
                stored.append(_record(message))

        for record in records:
            while True:
                try:
                    self._producer.produce(record.topic, record.value, record.key, headers=list(record.headers),
                                           on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: let some of it go first
                    self._producer.poll(0.05)
        deadline = time.monotonic() + TIMEOUT_S + 5
        while self._producer.flush(1.0) > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self._producer)} records not acknowledged within {TIMEOUT_S}s")
        if errors:
            raise KafkaException(errors[0])
        return stored if keep else len(records)


class TopicReader:
    """Every record of some topics, all partitions assigned by hand: no consumer group, nothing committed.

    `start`: "beginning", "end" (records written after `start()` returns), or a time in ms since the
    epoch (from each partition's first record at or after it).
    """

    def __init__(self, bootstrap: str, topics: Sequence[str], *, start: str | int = "beginning") -> None:
        self._bootstrap, self._topics, self._start = bootstrap, list(topics), start
        self._consumer: _Consumer | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="kafka-reader")
        self.next_offsets: dict[Partition, int] = {}  # the offset each partition is read up to

    async def __aenter__(self) -> TopicReader:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        await self._in_worker(self._open)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._in_worker(self._consumer.close)
            self._consumer = None
        self._worker.shutdown(wait=False)

    @property
    def partitions(self) -> list[Partition]:
        """What is assigned: every partition of the topics, as found at start."""
        return list(self.next_offsets)

    async def poll(self, timeout_s: float = 0.2, max_records: int = 10_000) -> list[Record]:
        """What has arrived: waits up to `timeout_s` for a first record, not for a full batch."""
        return await self._in_worker(self._fetch, timeout_s, max_records)

    async def read_to_end(self, timeout_s: float = TIMEOUT_S) -> list[Record]:
        """Every record up to the end offsets as they are now (and perhaps a few after)."""
        return await self._in_worker(self._read_to_end, timeout_s)

    async def _in_worker(self, call: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._worker, call, *args)

    def _open(self) -> None:
        # librdkafka insists on a group id; assign() never joins it, and nothing is committed to it.
        consumer = _Consumer({"bootstrap.servers": self._bootstrap, "client.id": "pytake-devstack",
                              "group.id": "pytake-devstack-reader-" + secrets.token_hex(4),
                              "enable.auto.commit": False, "enable.auto.offset.store": False,
                              "auto.offset.reset": "earliest"}, logger=None)
        self._consumer = consumer
        partitions = [_KafkaPartition(topic, p) for topic in self._topics for p in _partitions_of(consumer, topic)]
        if self._start == "beginning":
            starts = [_watermarks(consumer, tp)[0] for tp in partitions]
            assigned = [_KafkaPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in partitions]
        elif self._start == "end":
            # Concrete offsets, not OFFSET_END: that is resolved later, after records written meanwhile.
            starts = [_watermarks(consumer, tp)[1] for tp in partitions]
            assigned = [_KafkaPartition(tp.topic, tp.partition, offset) for tp, offset in zip(partitions, starts)]
        elif isinstance(self._start, int):
            asked = [_KafkaPartition(tp.topic, tp.partition, self._start) for tp in partitions]
            found = _not_now_again(lambda: consumer.offsets_for_times(asked, timeout=TIMEOUT_S))
            ends = [_watermarks(consumer, tp)[1] for tp in partitions]
            starts = [tp.offset if tp.offset >= 0 else end for tp, end in zip(found, ends)]  # none as late: the end
            assigned = [_KafkaPartition(tp.topic, tp.partition, offset) for tp, offset in zip(partitions, starts)]
        else:
            raise ValueError(f"start must be 'beginning', 'end' or a time in ms, not {self._start!r}")
        self.next_offsets = {Partition(tp.topic, tp.partition): offset for tp, offset in zip(partitions, starts)}
        consumer.assign(assigned)

    def _fetch(self, timeout_s: float, max_records: int) -> list[Record]:
        # consume(n, timeout) would wait out the whole timeout unless n records come: poll for the first.
        consumer = self._live()
        first = consumer.poll(timeout_s)
        if first is None:
            return []
        messages = [first, *consumer.consume(max_records - 1, 0)] if max_records > 1 else [first]
        records = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal() or error.code() in _REFUSALS:
                    raise KafkaException(error)
                continue  # brokers away, a leader moving: librdkafka retries by itself
            record = _record(message)
            self.next_offsets[Partition(record.topic, record.partition)] = record.offset + 1
            records.append(record)
        return records

    def _read_to_end(self, timeout_s: float) -> list[Record]:
        consumer = self._live()
        ends = {tp: _watermarks(consumer, _KafkaPartition(*tp))[1] for tp in self.next_offsets}
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while any(self.next_offsets[tp] < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                behind = {tp: (self.next_offsets[tp], end) for tp, end in ends.items() if self.next_offsets[tp] < end}
                raise TimeoutError(f"not read to the end within {timeout_s}s: (at, end) {behind}")
            records.extend(self._fetch(0.5, 10_000))
        return records

    def _live(self) -> _Consumer:
        if self._consumer is None:
            raise RuntimeError("the reader is not started")
        return self._consumer


_REFUSALS = {KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION, KafkaError._UNKNOWN_TOPIC,
             KafkaError.TOPIC_AUTHORIZATION_FAILED}


async def read_topics(bootstrap: str, topics: Sequence[str], *, start: str | int = "beginning",
                      timeout_s: float = TIMEOUT_S) -> list[Record]:
    """Every record now in these topics (from `start`, as in TopicReader), up to the end offsets taken first."""
    async with TopicReader(bootstrap, topics, start=start) as reader:
        return await reader.read_to_end(timeout_s)


def _watermarks(consumer: _Consumer, tp: _KafkaPartition) -> tuple[int, int]:
    """The partition's first offset and the offset its next record will get."""
    return _not_now_again(lambda: consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S))


def _not_now_again(call: Any) -> Any:
    """Calls again while Kafka answers "not now" (a leader or coordinator moving, a topic just made)."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        try:
            return call()
        except KafkaException as exc:
            if not _not_now(exc) or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def _not_now(exc: KafkaException) -> bool:
    error = exc.args[0] if exc.args else None
    return isinstance(error, KafkaError) and (error.retriable() or error.code() in _NOT_NOW)


_NOT_NOW = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
            KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
            KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.REQUEST_TIMED_OUT, KafkaError._TRANSPORT,
            KafkaError._TIMED_OUT}


def _partitions_of(client: Any, topic: str) -> list[int]:
    """The topic's partitions; a topic just created may take a moment to show them all."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        found = client.list_topics(topic, timeout=TIMEOUT_S).topics.get(topic)
        if found is not None and found.error is None and found.partitions:
            return sorted(found.partitions)
        if time.monotonic() > deadline:
            raise LookupError(f"topic {topic} has no partitions: {found.error if found else 'not found'}")
        time.sleep(0.1)


class Admin:
    """Offsets and consumer groups seen from outside (librdkafka's AdminClient): no group is joined."""

    def __init__(self, bootstrap: str, *, timeout_s: float = TIMEOUT_S) -> None:
        self._bootstrap, self._timeout_s = bootstrap, timeout_s
        self._client = AdminClient({"bootstrap.servers": bootstrap, "client.id": "pytake-devstack"})

    async def partitions(self, topic: str) -> list[Partition]:
        return [Partition(topic, p) for p in await asyncio.to_thread(_partitions_of, self._client, topic)]

    async def end_offsets(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """The offset the next record of each partition will get."""
        asked = {_KafkaPartition(tp.topic, tp.partition): OffsetSpec.latest() for tp in partitions}
        if not asked:
            return {}

        async def ask() -> dict[Partition, int]:
            futures = self._client.list_offsets(asked, request_timeout=self._timeout_s)
            return {Partition(tp.topic, tp.partition): (await asyncio.wrap_future(found)).offset
                    for tp, found in futures.items()}

        return await self._retrying(ask)

    async def committed(self, group: str, partitions: Iterable[Partition] | None = None) -> dict[Partition, int]:
        """The group's committed offsets (of these partitions, else of all): those it has committed only."""
        asked = None if partitions is None else [_KafkaPartition(tp.topic, tp.partition) for tp in partitions]
        request = ConsumerGroupTopicPartitions(group, asked)

        async def ask() -> dict[Partition, int]:
            (future,) = self._client.list_consumer_group_offsets([request], request_timeout=self._timeout_s).values()
            found = await asyncio.wrap_future(future)
            return {Partition(tp.topic, tp.partition): tp.offset for tp in found.topic_partitions or []
                    if tp.offset >= 0}

        return await self._retrying(ask)

    async def group_state(self, group: str) -> ConsumerGroupState:
        """EMPTY once no member is left (a killed one: once its session timed out), STABLE, ..."""
        async def ask() -> ConsumerGroupState:
            (future,) = self._client.describe_consumer_groups([group], request_timeout=self._timeout_s).values()
            return (await asyncio.wrap_future(future)).state

        return await self._retrying(ask)

    async def commit(self, group: str, offsets: dict[Partition, int]) -> None:
        """Commits for the group from outside it; Kafka takes that only while the group is empty."""
        def commit() -> None:
            consumer = _Consumer({"bootstrap.servers": self._bootstrap, "client.id": "pytake-devstack",
                                  "group.id": group, "enable.auto.commit": False}, logger=None)
            try:
                done = consumer.commit(offsets=[_KafkaPartition(tp.topic, tp.partition, offset)
                                                for tp, offset in offsets.items()], asynchronous=False)
                refused = [tp for tp in done or [] if tp.error is not None]
                if refused:
                    raise KafkaException(refused[0].error)
            finally:
                consumer.close()

        await asyncio.to_thread(commit)

    async def _retrying(self, ask: Any) -> Any:
        """Asks again while Kafka answers "not now" (a leader or coordinator moving, a topic just made)."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                return await ask()
            except KafkaException as exc:
                if not _not_now(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.1)

