"""An in-memory stand-in for a Kafka consumer-group member (pytake_plumbing.kafka_loop.RecordSource),
for unit tests of a service's consumer: it holds every partition, hands out what is put in, in
order, and records commits and seeks."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition


class FakeRecordSource:
    def __init__(self) -> None:
        self.topics: list[str] = []
        self.committed: dict[TopicPartition, int] = {}
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.started = self.stopped = False
        self._log: dict[TopicPartition, list[ConsumerRecord]] = {}
        self._position: dict[TopicPartition, int] = {}
        self._arrived = asyncio.Event()

    # --- what a test does

    def put(self, topic: str, *values: bytes, partition: int = 0, key: bytes | None = None) -> None:
        tp = TopicPartition(topic, partition)
        log = self._log.setdefault(tp, [])
        self._position.setdefault(tp, 0)
        for value in values:
            log.append(ConsumerRecord(topic, partition, len(log), int(time.time() * 1000), 0, key, value, None,
                                      len(key or b""), len(value), ()))
        self._arrived.set()

    async def all_committed(self, timeout_s: float = 5.0) -> None:
        """Returns once every record put in has been handled and committed."""
        async def done() -> None:
            while any(self.committed.get(tp, 0) < len(log) for tp, log in self._log.items()):
                await asyncio.sleep(0.005)

        await asyncio.wait_for(done(), timeout_s)

    # --- what the loop uses

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        self.topics = list(topics)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        ready = self._ready(max_records)
        if not ready:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), timeout_ms / 1000)
            except TimeoutError:
                return {}
            ready = self._ready(max_records)
        for tp, records in ready.items():
            self._position[tp] = records[-1].offset + 1
        return ready

    def _ready(self, max_records: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        ready: dict[TopicPartition, list[ConsumerRecord]] = {}
        left = max_records
        for tp, log in self._log.items():
            records = log[self._position[tp]:self._position[tp] + left]
            if records:
                ready[tp] = records
                left -= len(records)
        return ready

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.update(offsets)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))
        self._position[partition] = offset
        self._arrived.set()

    def assignment(self) -> set[TopicPartition]:
        return set(self._log)
