"""A consumer-group member that hands batches of records to a handler, and commits them once handled.

- No waiting when idle: the loop blocks in a long fetch, which returns as soon as a record arrives,
  and hands over whatever has arrived (up to `max_records`). A backlog comes in batches, a lone
  record at once. (FastStream's batch subscriber sleeps its whole batch timeout after every empty
  poll, so at low load each hop waited up to that long: 36 ms on average at the forwarder.)
- Offsets are committed only after the handler returns: its work is durable. A handler that
  raises has its batch delivered again, from each partition's first record in it (the handler
  waits out an outage itself before raising).
- A rebalance waits for the batch in hand to be handled and committed before the partitions go,
  so their next owner does not do it again; a commit that fails is tried again with the next.
- Kafka errors while fetching are waited out with the shared backoff.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from itertools import chain
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from pytake_contracts.topics import TopicSpec

from .backoff import OUTAGE
from .logs import get_logger
from .settings import CommonSettings

log = get_logger(__name__)

RecordsHandler = Callable[[Sequence[ConsumerRecord]], Awaitable[None]]
# Long: a fetch returns as soon as a record arrives; this only bounds how long stop() may wait.
FETCH_TIMEOUT_MS = 1000
REBALANCE_GRACE_S = 30.0


class RecordSource(Protocol):
    """What the loop needs of a Kafka consumer (aiokafka's, or a fake in unit tests)."""

    def subscribe(self, topics: list[str], listener: ConsumerRebalanceListener) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[ConsumerRecord]]: ...
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    def assignment(self) -> set[TopicPartition]: ...


class BatchLoop:
    def __init__(self, settings: CommonSettings, specs: Sequence[TopicSpec], *, group: str, handler: RecordsHandler,
                 max_records: int = 500, source: RecordSource | None = None) -> None:
        self._topics = [settings.topic(spec) for spec in specs]
        self._group = settings.consumer_group(group)
        self._handler = handler
        self._max_records = max_records
        self._options = dict(
            bootstrap_servers=settings.kafka_bootstrap_servers, group_id=self._group, client_id=f"pytake-{group}",
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=max_records,
            **settings.group_membership(self._group))
        self._given_source = source
        self._source: RecordSource = source  # type: ignore[assignment]  # Kafka's is made in start()
        self._uncommitted: dict[TopicPartition, int] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._given_source is None:
            self._source = AIOKafkaConsumer(**self._options)  # needs the running event loop
        self._source.subscribe(self._topics, listener=_WaitForBatch(self))
        await self._source.start()
        self._task = asyncio.create_task(self._run(), name=f"batch-loop:{self._group}")

    async def stop(self) -> None:
        """The batch in hand is finished and committed (for a while), then the member leaves."""
        self._stopping = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._idle.wait(), REBALANCE_GRACE_S)
            except TimeoutError:
                log.warning("batch_loop_stop_timeout", group=self._group)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            await self._commit()
        if self._source is not None:
            await self._source.stop()

    async def _run(self) -> None:
        fetch_failures = 0
        while not self._stopping:
            try:
                batches = await self._source.getmany(timeout_ms=FETCH_TIMEOUT_MS, max_records=self._max_records)
                fetch_failures = 0
            except KafkaError as exc:
                fetch_failures += 1
                log.warning("fetch_failed", group=self._group, error=repr(exc)[:300], attempt=fetch_failures)
                await asyncio.sleep(OUTAGE.delay(fetch_failures))
                continue
            if not batches or self._stopping:
                continue
            self._idle.clear()
            try:
                await self._handle(batches)
            finally:
                self._idle.set()

    async def _handle(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        records = list(chain.from_iterable(batches.values()))
        try:
            await self._handler(records)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("batch_failed_will_be_redelivered", group=self._group, error=repr(exc)[:300],
                        records=len(records))
            held = self._source.assignment()
            for tp, part in batches.items():
                if tp in held:
                    self._source.seek(tp, part[0].offset)
            return
        for tp, part in batches.items():
            self._uncommitted[tp] = part[-1].offset + 1
        await self._commit()

    async def _commit(self) -> None:
        if not self._uncommitted:
            return
        held = self._source.assignment()
        offsets = {tp: offset for tp, offset in self._uncommitted.items() if tp in held}
        try:
            if offsets:
                await self._source.commit(offsets)
        except KafkaError as exc:
            # Kafka away, or a rebalance under way: kept, and tried again after the next batch. A
            # partition that moves meanwhile is read again by its new owner (handlers are idempotent).
            log.warning("commit_failed", group=self._group, error=repr(exc)[:300])
            return
        self._uncommitted.clear()

    async def before_revocation(self) -> None:
        try:
            await asyncio.wait_for(self._idle.wait(), REBALANCE_GRACE_S)
        except TimeoutError:
            log.warning("batch_still_running_at_rebalance", group=self._group)
        await self._commit()
        self._uncommitted.clear()


class _WaitForBatch(ConsumerRebalanceListener):
    def __init__(self, loop: BatchLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._loop.before_revocation()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        return None
