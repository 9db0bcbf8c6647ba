"""In-memory stand-ins for Kafka in unit tests.

FakeRecordSource (pytake_plumbing.consumer.RecordSource): it is assigned each partition as records
first arrive in it (telling the rebalance listener), hands out what is put in, in order, and
records commits and pauses. FakeRecordProducer: keeps what a service publishes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from pytake_contracts import Event
from pytake_contracts.topics import TopicSpec
from pytake_plumbing.record_producer import EncodedRecord
from pytake_plumbing.record_source import Partition, Record


class FakeRecordSource:
    def __init__(self) -> None:
        self.topics: list[str] = []
        self.committed: dict[Partition, int] = {}
        self.paused: set[Partition] = set()
        self.started = self.stopped = False
        self._listener: Any = None
        self._assigned: set[Partition] = set()
        self._log: dict[Partition, list[Record]] = {}
        self._position: dict[Partition, int] = {}
        self._arrived = asyncio.Event()

    # --- what a test does

    def put(self, topic: str, *values: bytes, partition: int = 0, key: bytes | None = None,
            headers: tuple[tuple[str, bytes], ...] = (), timestamp_ms: int | None = None) -> None:
        tp = Partition(topic, partition)
        log = self._log.setdefault(tp, [])
        self._position.setdefault(tp, 0)
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        for value in values:
            log.append(Record(topic, partition, len(log), key, value, headers, stamp))
        self._arrived.set()

    async def all_committed(self, timeout_s: float = 5.0) -> None:
        """Returns once every record put in has been handled and committed."""
        await self.committed_up_to({tp: len(log) for tp, log in self._log.items()}, timeout_s)

    async def committed_up_to(self, offsets: dict[Partition, int], timeout_s: float = 5.0) -> None:
        async def done() -> None:
            while any(self.committed.get(tp, 0) < offset for tp, offset in offsets.items()):
                await asyncio.sleep(0.005)

        await asyncio.wait_for(done(), timeout_s)

    async def revoke(self, *partitions: Partition) -> None:
        """A rebalance takes these partitions away (the listener is told first, as Kafka does)."""
        if self._listener is not None:
            await self._listener.on_partitions_revoked(list(partitions))
        self._assigned -= set(partitions)

    # --- what the consumer uses

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.topics = list(topics)
        self._listener = listener

    def assign(self, offsets: dict[Partition, int]) -> None:
        self._assigned = set(offsets)
        for tp, offset in offsets.items():
            self._log.setdefault(tp, [])
            self._position[tp] = offset

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Partition, list[Record]]:
        await self._assign_new()
        ready = self._ready(max_records)
        if not ready and timeout_ms > 0:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout_ms / 1000)
            except TimeoutError:
                return {}
            await self._assign_new()
            ready = self._ready(max_records)
        for tp, records in ready.items():
            self._position[tp] = records[-1].offset + 1
        return ready

    async def _assign_new(self) -> None:
        if self._listener is None:
            return  # assigned by hand
        new = [tp for tp in self._log if tp not in self._assigned and tp.topic in self.topics]
        if new:
            self._assigned |= set(new)
            await self._listener.on_partitions_assigned(new)

    def _ready(self, max_records: int) -> dict[Partition, list[Record]]:
        ready: dict[Partition, list[Record]] = {}
        left = max_records
        for tp, log in self._log.items():
            if tp not in self._assigned or tp in self.paused:
                continue
            records = log[self._position[tp]:self._position[tp] + left]
            if records:
                ready[tp] = records
                left -= len(records)
        return ready

    async def commit(self, offsets: dict[Partition, int]) -> None:
        self.committed.update(offsets)

    def pause(self, *partitions: Partition) -> None:
        self.paused |= set(partitions)

    def resume(self, *partitions: Partition) -> None:
        self.paused -= set(partitions)
        self._arrived.set()

    async def position(self, partition: Partition) -> int:
        return self._position[partition]

    async def end_offsets(self, partitions: list[Partition]) -> dict[Partition, int]:
        return {tp: len(self._log.get(tp, [])) for tp in partitions}

    async def offsets_for_times(self, timestamps: dict[Partition, int]) -> dict[Partition, int | None]:
        found: dict[Partition, int | None] = {}
        for tp, since_ms in timestamps.items():
            first = next((r for r in self._log.get(tp, []) if r.timestamp >= since_ms), None)
            found[tp] = first.offset if first is not None else None
        return found


class FakeRecordProducer:
    """An in-memory stand-in for pytake_plumbing.record_producer.RecordProducer: keeps what is
    published, as (topic spec, event, key), and what is published already encoded."""

    def __init__(self) -> None:
        self.published: list[tuple[TopicSpec, Event, str]] = []
        self.encoded: list[EncodedRecord] = []
        self.started = self.stopped = False
        self.failure: BaseException | None = None  # raised by the next publishes while set

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def reachable(self) -> bool:
        return self.started and not self.stopped

    async def publish(self, spec: TopicSpec, event: Event, key: str) -> None:
        await self.publish_all([(spec, event, key)])

    def publish_all(self, items: Sequence[tuple[TopicSpec, Event, str]]) -> asyncio.Future[None]:
        return self._settled(lambda: self.published.extend(items))

    def publish_encoded(self, records: Sequence[EncodedRecord]) -> asyncio.Future[None]:
        return self._settled(lambda: self.encoded.extend(records))

    def of(self, spec: TopicSpec) -> list[Event]:
        return [event for published, event, _ in self.published if published.name == spec.name]

    def _settled(self, keep: Callable[[], None]) -> asyncio.Future[None]:
        done = asyncio.get_running_loop().create_future()
        if self.failure is not None:
            done.set_exception(self.failure)
        else:
            keep()
            done.set_result(None)
        return done
