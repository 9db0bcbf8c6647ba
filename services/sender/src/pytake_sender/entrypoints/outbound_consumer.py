"""The outbound consumer: one lane per conversation, many conversations at once.

MESSAGES_OUTBOUND is keyed by organization and contact, so a conversation's requests sit in
one partition, in order. Records are dealt into a lane per key; each lane handles its
requests one after the other (order kept), while lanes run concurrently, so a conversation
waiting on a retry, the pair limit or an unanswered send holds up no other. Offsets are
committed by hand, per partition, only up to the lowest record not yet finished: after a
crash, everything unfinished is read again (and the delivery records make it harmless).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from pytake_contracts import Event, OutboundMessageRequested, UnknownEventError, decode_event
from pytake_plumbing.backoff import OUTAGE
from pytake_plumbing.logs import get_logger, log_context
from pytake_plumbing.messaging import TRANSIENT_ERRORS, PermanentError, is_transient

log = get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)

Handler = Callable[[OutboundMessageRequested], Awaitable[object]]
DeadLetter = Callable[[ConsumerRecord, str, int], Awaitable[None]]
MAX_HANDLER_ATTEMPTS = 5


class PartitionOffsets:
    """Offsets of one partition in flight; `committable` is the lowest one not finished."""

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._finished: set[int] = set()
        self.committable: int | None = None
        self.committed: int | None = None
        self.drained = asyncio.Event()
        self.drained.set()

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    def add(self, offset: int) -> None:
        self._pending.append(offset)
        self.drained.clear()

    def finish(self, offset: int) -> None:
        self._finished.add(offset)
        while self._pending and self._pending[0] in self._finished:
            done = self._pending.popleft()
            self._finished.discard(done)
            self.committable = done + 1
        if not self._pending:
            self.drained.set()


@dataclass
class _Item:
    tp: TopicPartition
    offsets: PartitionOffsets
    record: ConsumerRecord
    event: Event | None
    error: str | None = None


@dataclass
class _Lane:
    items: deque[_Item] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None


class OutboundConsumer:
    def __init__(self, *, bootstrap_servers: str, topic: str, group_id: str, handler: Handler,
                 dead_letter: DeadLetter, max_buffered: int = 5000, max_active: int = 1000,
                 commit_interval_s: float = 1.0, drain_grace_s: float = 10.0,
                 membership: dict[str, Any] | None = None) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._membership = membership or {}
        self._topic = topic
        self._group_id = group_id
        self._handler = handler
        self._dead_letter = dead_letter
        self._max_buffered = max_buffered
        self._active = asyncio.Semaphore(max_active)
        self._commit_interval_s = commit_interval_s
        self._drain_grace_s = drain_grace_s
        self._offsets: dict[TopicPartition, PartitionOffsets] = {}
        self._lanes: dict[bytes, _Lane] = {}
        self._buffered = 0
        self._paused = False
        self._stopping = False
        self._consumer: AIOKafkaConsumer | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._committed_at = 0.0

    @property
    def buffered(self) -> int:
        return self._buffered

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap_servers, group_id=self._group_id, client_id="pytake-sender",
            enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=2000,
            # Lanes keep working while the loop waits: it only has to come back to poll.
            max_poll_interval_ms=300_000, **self._membership)
        self._consumer.subscribe([self._topic], listener=_Listener(self))
        await self._consumer.start()
        self._loop_task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        if self._loop_task:
            await self._loop_task
        if self._consumer:
            await self._let_go(list(self._offsets))
            await self._consumer.stop()

    async def _run(self) -> None:
        assert self._consumer is not None
        while not self._stopping:
            self._apply_backpressure()
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=2000)
            except KafkaError as exc:
                log.warning("outbound_poll_failed", error=repr(exc)[:300])
                await asyncio.sleep(1.0)
                continue
            for tp, records in batches.items():
                offsets = self._offsets.get(tp)
                if offsets is None:
                    continue  # revoked meanwhile: its new owner reads them
                for record in records:
                    self._accept(tp, offsets, record)
            if time.monotonic() - self._committed_at >= self._commit_interval_s:
                await self._commit()

    def _accept(self, tp: TopicPartition, offsets: PartitionOffsets, record: ConsumerRecord) -> None:
        offsets.add(record.offset)
        self._buffered += 1
        try:
            item = _Item(tp, offsets, record, decode_event(record.value or b""))
        except (ValidationError, UnknownEventError, ValueError) as exc:
            item = _Item(tp, offsets, record, None, f"undecodable: {exc}")
        key = record.key or b""
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.items.append(item)
        if lane.task is None:
            lane.task = asyncio.create_task(self._work(key, lane))

    async def _work(self, key: bytes, lane: _Lane) -> None:
        try:
            async with self._active:
                while lane.items:
                    item = lane.items[0]
                    if self._offsets.get(item.tp) is item.offsets:  # else revoked: left to the new owner
                        await self._process(item)
                        item.offsets.finish(item.record.offset)
                    lane.items.popleft()
                    self._buffered -= 1
        finally:
            lane.task = None
            if not lane.items and self._lanes.get(key) is lane:
                del self._lanes[key]
            elif lane.items and not self._stopping:
                lane.task = asyncio.create_task(self._work(key, lane))

    async def _process(self, item: _Item) -> None:
        if item.event is None:
            await self._dead_letter(item.record, item.error or "undecodable", 1)
            return
        event = item.event
        if not isinstance(event, OutboundMessageRequested):
            return  # another consumer's event on a shared topic
        attempt = 0
        with log_context(correlation_id=event.correlation_id, event_id=str(event.event_id),
                         event_type=event.event_type, organization_id=str(event.organization_id)):
            while True:
                try:
                    result = await self._handler(event)
                    # Checked first: structlog runs its processors even for a line the level drops.
                    if _stdlib_log.isEnabledFor(logging.INFO):
                        log.info("event_handled", partition=item.tp.partition, offset=item.record.offset,
                                 result=result)
                    return
                except PermanentError as exc:
                    await self._dead_letter(item.record, f"{type(exc).__name__}: {exc}", attempt + 1)
                    return
                except Exception as exc:
                    attempt += 1
                    transient = isinstance(exc, TRANSIENT_ERRORS) or is_transient(exc)
                    if not transient and attempt >= MAX_HANDLER_ATTEMPTS:
                        await self._dead_letter(item.record, f"{type(exc).__name__}: {exc}", attempt)
                        return
                    log.warning("handler_failed_will_retry", error=repr(exc)[:500], attempt=attempt,
                                transient=transient)
                    await asyncio.sleep(OUTAGE.delay(attempt))

    def _apply_backpressure(self) -> None:
        assert self._consumer is not None
        assignment = list(self._consumer.assignment())
        if not self._paused and self._buffered >= self._max_buffered:
            self._consumer.pause(*assignment)
            self._paused = True
        elif self._paused and self._buffered < self._max_buffered // 2:
            self._consumer.resume(*assignment)
            self._paused = False

    async def _commit(self, offsets: dict[TopicPartition, PartitionOffsets] | None = None) -> None:
        assert self._consumer is not None
        self._committed_at = time.monotonic()
        offsets = self._offsets if offsets is None else offsets
        wanted = {tp: o.committable for tp, o in offsets.items()
                  if o.committable is not None and o.committable != o.committed}
        if not wanted:
            return
        try:
            await self._consumer.commit(wanted)  # type: ignore[arg-type]
        except KafkaError as exc:
            # A rebalance is under way: whatever is uncommitted is read again and found done.
            log.warning("outbound_commit_failed", error=repr(exc)[:300])
            return
        for tp, offset in wanted.items():
            offsets[tp].committed = offset

    async def _let_go(self, tps: list[TopicPartition]) -> None:
        """Let in-flight work on these partitions finish (for a while), then cancel the rest and
        commit what is done. A send cut off mid-way stays unresolved in its delivery record and
        is resolved by whoever reads the request next."""
        waits = [self._offsets[tp].drained.wait() for tp in tps if tp in self._offsets]
        if waits:
            try:
                await asyncio.wait_for(asyncio.gather(*waits), self._drain_grace_s)
            except TimeoutError:
                log.warning("outbound_drain_timeout", partitions=[tp.partition for tp in tps])
        leaving = {tp: self._offsets.pop(tp) for tp in tps if tp in self._offsets}
        for lane in list(self._lanes.values()):
            if lane.task and lane.items and lane.items[0].tp in leaving:
                lane.task.cancel()
        await self._commit(leaving)

    async def on_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._let_go(revoked)

    def on_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self._offsets.setdefault(tp, PartitionOffsets())
        if self._paused and self._consumer is not None:
            self._consumer.pause(*assigned)


class _Listener(ConsumerRebalanceListener):
    def __init__(self, consumer: OutboundConsumer) -> None:
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked):  # type: ignore[no-untyped-def]
        await self._consumer.on_revoked(list(revoked))

    async def on_partitions_assigned(self, assigned):  # type: ignore[no-untyped-def]
        self._consumer.on_assigned(list(assigned))
