"""PyTake's one consumer runtime: every service's Kafka entrypoint is a list of `Subscription`s,
each run by a `Consumer`.

How records flow:
- A fetch loop blocks in a long fetch that returns as soon as a record arrives (no poll interval,
  no batch window: a lone record is handled at once), decodes what came and deals it into lanes.
- A lane handles its records in order, up to `batch` events per handler call: whatever queued
  while the previous call ran, so a backlog goes in batches and an idle pipeline waits for nothing.
  One lane by default (the flow engine's transaction per batch); `lanes=BY_KEY` gives each record
  key a lane of its own, lanes running concurrently (the sender's conversations). Off the
  customer's path, `linger_s` lets a lane wait a moment for a fuller batch (the audit's writes).
- The fetch loop keeps reading while lanes work, up to `max_buffered` records, then pauses its
  partitions until the lanes catch up (backpressure).

One policy for failures:
- undecodable record, or `PermanentError` → dead-letter topic with the reason, at once;
- an outage (`is_outage`) → the lane pauses with the shared backoff and hands the same events
  over again, however long it lasts: order is kept, nothing is skipped;
- any other error → a batch is retried one event at a time, each up to `max_attempts` times,
  then dead-lettered, so a poison event holds up neither its batch nor its partition.

Offsets: each partition's offset is committed only up to its lowest record not yet finished
(handled, or dead-lettered), right after the work is done; commits coalesce under load. After a
crash everything unfinished is read again: handlers are idempotent.

Rebalance and shutdown: queued records of partitions that leave are dropped (their next owner
reads them), the lanes' calls in hand get `grace_s` to finish, then are cancelled; what is
finished is committed before the partitions go.

`broadcast=True`: every process reads every partition, outside any consumer group, from now (or
from `since_s` back), and commits nothing: caches and revocations every replica must see. One
broadcast of a topic keeps its dead letters (the router's, for its registry changes); the others
pass `dead_letters=None` and log and skip what they cannot read.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from pytake_contracts import Event, UnknownEventError, decode_event
from pytake_contracts.topics import DEAD_LETTERS, TopicSpec

from . import handled_log
from .backoff import OUTAGE, Backoff
from .logs import get_logger, log_context
from .messaging import PermanentError, dead_letter_event, is_outage
from .record_source import KafkaRecordSource, KafkaUnreachable, Partition, Record, RebalanceListener
from .settings import CommonSettings

log = get_logger(__name__)

BatchHandler = Callable[[Sequence[Event]], Awaitable[Any]]
LaneOf = Callable[[Record], Hashable]
# Long: a fetch returns as soon as a record arrives; this only bounds how long a pause or stop waits.
FETCH_TIMEOUT_MS = 1000


def BY_KEY(record: Record) -> Hashable:  # noqa: N802 - a constant-like choice of lanes
    """A lane per record key: a key's records in order, keys concurrently."""
    return record.key or b""


def _ONE_LANE(record: Record) -> Hashable:  # noqa: N802
    return None


def each(handler: Callable[[Event], Awaitable[Any]]) -> BatchHandler:
    """A handler of one event, for a subscription with `batch=1`."""
    async def handle(events: Sequence[Event]) -> None:
        for event in events:
            await handler(event)

    return handle


@dataclass(frozen=True)
class Subscription:
    specs: Sequence[TopicSpec]
    group: str  # the consumer group (a service's name); for a broadcast, only its name in logs
    handler: BatchHandler
    accepts: tuple[type[Event], ...] = (Event,)  # other events on a shared topic are skipped
    batch: int = 500  # most events per handler call
    # How long a lane with fewer than `batch` events waits for more before calling the handler:
    # 0 (no wait) on the customer's path; off it (the audit) a short wait turns a stream of
    # single-event writes into a few large ones.
    linger_s: float = 0.0
    lanes: LaneOf = _ONE_LANE
    max_attempts: int = 5
    backoff: Backoff = OUTAGE
    broadcast: bool = False
    since_s: float | None = None  # a broadcast starts this far back (else at the end)
    # Told which events of a call were handled (not dead-lettered); by default each gets its
    # `event_handled` log line, the call's lines written in one go.
    on_handled: Callable[[Sequence[tuple[Record, Event]]], None] | None = None


class DeadLetterSink(Protocol):
    async def publish(self, spec: TopicSpec, event: Event, key: str) -> None: ...


class RecordSource(Protocol):
    """What the runtime needs of a Kafka consumer (record_source's, or a fake in unit tests).
    `commit` marks offsets done: the source commits them (at once, or soon and at a revocation)."""

    def subscribe(self, topics: list[str], listener: RebalanceListener) -> None: ...
    def assign(self, offsets: dict[Partition, int]) -> None: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[Partition, list[Record]]: ...
    async def commit(self, offsets: dict[Partition, int]) -> None: ...
    def pause(self, *partitions: Partition) -> None: ...
    def resume(self, *partitions: Partition) -> None: ...
    async def position(self, partition: Partition) -> int: ...
    async def end_offsets(self, partitions: list[Partition]) -> dict[Partition, int]: ...
    async def offsets_for_times(self, timestamps: dict[Partition, int]) -> dict[Partition, int | None]: ...


class PartitionOffsets:
    """Offsets of one partition in hand; `committable` is the lowest one not finished."""

    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._finished: set[int] = set()
        self.committable: int | None = None
        self.committed: int | None = None

    def add(self, offset: int) -> None:
        self._pending.append(offset)

    def finish(self, offset: int) -> None:
        self._finished.add(offset)
        while self._pending and self._pending[0] in self._finished:
            done = self._pending.popleft()
            self._finished.discard(done)
            self.committable = done + 1


@dataclass
class _Item:
    tp: Partition
    offsets: PartitionOffsets
    record: Record
    event: Event | None  # None: undecodable (see error) or not accepted here
    error: str | None = None


@dataclass
class _Lane:
    queued: deque[_Item] = field(default_factory=deque)
    working: list[_Item] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    pausing: bool = False  # waiting out an outage: nothing to wait for at a rebalance
    filling: asyncio.Event | None = None  # set once `batch` events are queued, while lingering


class Consumer:
    def __init__(self, settings: CommonSettings, subscription: Subscription, *, dead_letters: DeadLetterSink | None,
                 max_buffered: int = 5000, max_active: int = 1000, grace_s: float = 30.0,
                 source: RecordSource | None = None) -> None:
        self._sub = subscription
        self._topics = [settings.topic(spec) for spec in subscription.specs]
        self._partitions = [Partition(settings.topic(spec), p)
                            for spec in subscription.specs for p in range(spec.partitions)]
        self._name = settings.consumer_group(subscription.group)
        self._dead_letters = dead_letters
        self._max_buffered = max_buffered
        self._active = asyncio.Semaphore(max_active)
        self._grace_s = grace_s
        config: dict[str, Any] = {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "client.id": f"pytake-{subscription.group}",
            "auto.offset.reset": "earliest",
            # As the partitions spread before: every member gets its share of each topic.
            "partition.assignment.strategy": "roundrobin",
            # Lanes work while the fetch loop waits: it only has to come back.
            "max.poll.interval.ms": 300_000,
            **settings.group_membership(self._name),
        }
        if subscription.broadcast:  # assigned by hand: the group id is never joined, nothing committed
            config["group.id"] = f"{self._name}.broadcast"
            config.pop("group.instance.id", None)
        self._config = config
        self._given_source = source
        self._source: RecordSource = source  # type: ignore[assignment]  # Kafka's is made in start()
        self._offsets: dict[Partition, PartitionOffsets] = {}
        self._lanes: dict[Hashable, _Lane] = {}
        self._fetch_max = max(subscription.batch, 500)
        self._buffered = 0
        self._paused = False
        self._room = asyncio.Event()
        self._stopping = False
        self._fetching: asyncio.Task[None] | None = None
        self._committing: asyncio.Task[None] | None = None
        self._commit_wanted = False
        self._starts: dict[Partition, int] = {}
        self._ends: dict[Partition, int] = {}
        self.caught_up = asyncio.Event()  # a broadcast has read what was there when it started

    @property
    def buffered(self) -> int:
        return self._buffered

    async def ready(self) -> bool:
        return self.caught_up.is_set()

    async def start(self) -> None:
        if self._given_source is None:
            self._source = KafkaRecordSource(self._config, commits=not self._sub.broadcast)
        if self._sub.broadcast:
            await self._source.start()
            await self._start_broadcast()
        else:
            self._source.subscribe(self._topics, listener=self)
            await self._source.start()
            self.caught_up.set()
        self._fetching = asyncio.create_task(self._fetch(), name=f"consumer:{self._name}")

    async def _start_broadcast(self) -> None:
        self._ends = await self._source.end_offsets(self._partitions)
        found: dict[Partition, int | None] = {}
        if self._sub.since_s is not None:
            since_ms = int((time.time() - self._sub.since_s) * 1000)
            found = await self._source.offsets_for_times({tp: since_ms for tp in self._partitions})
        self._starts = {tp: self._ends[tp] if found.get(tp) is None else found[tp]  # type: ignore[misc]
                        for tp in self._partitions}
        self._source.assign(self._starts)
        self.on_assigned(self._partitions)

    async def stop(self) -> None:
        """Stops reading, lets the calls in hand finish (for a while), commits, leaves."""
        self._stopping = True
        if self._fetching is not None:
            self._fetching.cancel()
            await asyncio.gather(self._fetching, return_exceptions=True)
            await self._let_go(list(self._offsets))
        if self._source is not None:
            await self._source.stop()

    # --- reading

    async def _fetch(self) -> None:
        failures = 0
        while not self._stopping:
            if not self.caught_up.is_set():
                await self._check_caught_up()
            timeout_ms = FETCH_TIMEOUT_MS
            if self._apply_backpressure():
                self._room.clear()
                try:
                    await asyncio.wait_for(self._room.wait(), FETCH_TIMEOUT_MS / 1000)
                except TimeoutError:
                    pass
                timeout_ms = 0  # a poll all the same: the group counts a member that stops polling as gone
            try:
                room = max(1, min(self._fetch_max, self._max_buffered - self._buffered))
                batches = await self._source.getmany(timeout_ms=timeout_ms, max_records=room)
                failures = 0
            except KafkaUnreachable as exc:
                failures += 1
                log.warning("fetch_failed", consumer=self._name, error=repr(exc)[:300], attempt=failures)
                await asyncio.sleep(self._sub.backoff.delay(failures))
                continue
            for tp, records in batches.items():
                offsets = self._offsets.get(tp)
                if offsets is None:
                    continue  # revoked meanwhile: its new owner reads them
                for record in records:
                    self._deal(tp, offsets, record)

    def _deal(self, tp: Partition, offsets: PartitionOffsets, record: Record) -> None:
        offsets.add(record.offset)
        self._buffered += 1
        try:
            event: Event | None = decode_event(record.value or b"")
            item = _Item(tp, offsets, record, event if isinstance(event, self._sub.accepts) else None)
        except (ValidationError, UnknownEventError, ValueError) as exc:
            item = _Item(tp, offsets, record, None, f"undecodable: {exc}")
        key = self._sub.lanes(record)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        lane.queued.append(item)
        if lane.filling is not None and len(lane.queued) >= self._sub.batch:
            lane.filling.set()
        if lane.task is None:
            lane.task = asyncio.create_task(self._work(key, lane))

    async def _check_caught_up(self) -> None:
        for tp, end in self._ends.items():
            position = await self._source.position(tp)
            if max(position, self._starts[tp]) < end:  # nothing read yet: no position
                return
        self.caught_up.set()
        log.info("consumer_caught_up", consumer=self._name)

    def _apply_backpressure(self) -> bool:
        """Pauses the partitions while `max_buffered` records wait, until half of them are done."""
        if not self._paused and self._buffered >= self._max_buffered:
            self._source.pause(*self._offsets)
            self._paused = True
            for lane in self._lanes.values():  # a backlog: no lingering, nothing more comes until they work
                if lane.filling is not None:
                    lane.filling.set()
        elif self._paused and self._buffered < self._max_buffered // 2:
            self._source.resume(*self._offsets)
            self._paused = False
        return self._paused

    # --- handling

    async def _work(self, key: Hashable, lane: _Lane) -> None:
        try:
            async with self._active:
                while lane.queued:
                    if (self._sub.linger_s and len(lane.queued) < self._sub.batch and not self._paused
                            and not self._stopping):
                        await self._linger(lane)
                        if not lane.queued:  # its partitions left meanwhile
                            break
                    while lane.queued and len(lane.working) < self._sub.batch:
                        lane.working.append(lane.queued.popleft())
                    await self._handle(lane)
                    for item in lane.working:
                        item.offsets.finish(item.record.offset)
                    self._buffered -= len(lane.working)
                    lane.working = []
                    self._commit_soon()
                    if self._paused and self._buffered < self._max_buffered // 2:
                        self._room.set()
        finally:
            lane.task = None
            if lane.working:  # cancelled: what was in hand is queued again, unless its partition left
                kept = [item for item in lane.working if self._offsets.get(item.tp) is item.offsets]
                self._buffered -= len(lane.working) - len(kept)
                lane.queued.extendleft(reversed(kept))
                lane.working = []
            if not lane.queued and self._lanes.get(key) is lane:
                del self._lanes[key]
            elif lane.queued and not self._stopping:
                lane.task = asyncio.create_task(self._work(key, lane))

    async def _linger(self, lane: _Lane) -> None:
        lane.filling = asyncio.Event()
        try:
            await asyncio.wait_for(lane.filling.wait(), self._sub.linger_s)
        except TimeoutError:
            pass
        finally:
            lane.filling = None

    async def _handle(self, lane: _Lane) -> None:
        """Hands the lane's items in hand to the handler; returns once each is handled or dead-lettered."""
        items = [item for item in lane.working if item.event is not None]
        refused = [(item, item.error, 1) for item in lane.working if item.error is not None]
        if items:
            refused += await self._call(lane, items)
        for item, error, attempts in refused:
            await self._until_done(lane, lambda i=item, e=error, a=attempts: self._dead_letter(i, e, a))
        if items:
            done = [(item.record, item.event) for item in items if all(item is not r for r, _, _ in refused)]
            self._report(done)  # type: ignore[arg-type]

    async def _call(self, lane: _Lane, items: list[_Item]) -> list[tuple[_Item, str, int]]:
        """Returns the items refused for good, with the reason and the attempts made."""
        if len(items) == 1:
            return await self._call_one(lane, items[0])
        outages = 0
        while True:
            try:
                await self._sub.handler([item.event for item in items])  # type: ignore[misc]
                return []
            except Exception as exc:
                if not is_outage(exc):
                    log.warning("batch_failed_handling_one_by_one", consumer=self._name, error=repr(exc)[:500],
                                size=len(items))
                    break
                outages += 1
                await self._pause(lane, exc, outages)
        refused: list[tuple[_Item, str, int]] = []
        for item in items:
            refused += await self._call_one(lane, item)
        return refused

    async def _call_one(self, lane: _Lane, item: _Item) -> list[tuple[_Item, str, int]]:
        event = item.event
        assert event is not None
        attempts = outages = 0
        with log_context(correlation_id=event.correlation_id, event_id=str(event.event_id),
                         event_type=event.event_type,
                         organization_id=str(event.organization_id) if event.organization_id else None):
            while True:
                try:
                    await self._sub.handler([event])
                    return []
                except Exception as exc:
                    if is_outage(exc):
                        outages += 1
                        await self._pause(lane, exc, outages)
                        continue
                    attempts += 1
                    reason = f"{type(exc).__name__}: {exc}"
                    if isinstance(exc, PermanentError) or attempts >= self._sub.max_attempts:
                        return [(item, reason, attempts)]
                    log.warning("handler_failed_will_retry", error=repr(exc)[:500], attempt=attempts)
                    await asyncio.sleep(self._sub.backoff.delay(attempts))

    async def _until_done(self, lane: _Lane, work: Callable[[], Awaitable[None]]) -> None:
        outages = 0
        while True:
            try:
                await work()
                return
            except Exception as exc:
                outages += 1
                await self._pause(lane, exc, outages)

    async def _pause(self, lane: _Lane, exc: BaseException, outages: int) -> None:
        log.warning("dependency_unavailable_will_retry", consumer=self._name, error=repr(exc)[:300],
                    attempt=outages)
        lane.pausing = True
        try:
            await asyncio.sleep(self._sub.backoff.delay(outages))
        finally:
            lane.pausing = False

    async def _dead_letter(self, item: _Item, error: str, attempts: int) -> None:
        if self._dead_letters is None:
            # A broadcast: every replica reads the record; one dead letter from each would be noise.
            log.warning("record_skipped", consumer=self._name, topic=item.record.topic,
                        offset=item.record.offset, error=error[:300])
            return
        event = item.event
        letter = dead_letter_event(item.record, consumer=self._sub.group, error=error, attempts=attempts,
                                   correlation_id=event.correlation_id if event is not None else None,
                                   organization_id=event.organization_id if event is not None else None)
        await self._dead_letters.publish(DEAD_LETTERS, letter, item.record.topic)

    def _report(self, done: Sequence[tuple[Record, Event]]) -> None:
        (self._sub.on_handled or handled_log.write)(done)

    # --- committing (the partitions held are the keys of self._offsets: asking librdkafka for its
    # assignment is a round trip to its main thread, which blocked the event loop for up to 0.5 s)

    def _commit_soon(self) -> None:
        if self._sub.broadcast:
            return
        self._commit_wanted = True
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._commit_while_wanted())

    async def _commit_while_wanted(self) -> None:
        # One commit in flight: while idle each batch is committed at once, under load they coalesce.
        while self._commit_wanted:
            self._commit_wanted = False
            await self._commit(self._offsets)

    async def _commit(self, offsets: dict[Partition, PartitionOffsets]) -> None:
        """`offsets` are held: those assigned, or those being revoked (the revocation waits for this)."""
        if self._sub.broadcast:
            return
        wanted = {tp: o.committable for tp, o in offsets.items()
                  if o.committable is not None and o.committable != o.committed}
        if not wanted:
            return
        try:
            await self._source.commit(wanted)  # type: ignore[arg-type]
        except KafkaUnreachable as exc:
            # Kafka away, or a rebalance under way: tried again after the next call. A partition that
            # moves meanwhile is read again by its new owner, and found done.
            log.warning("commit_failed", consumer=self._name, error=repr(exc)[:300])
            return
        for tp, offset in wanted.items():
            offsets[tp].committed = offset

    # --- rebalancing and stopping

    async def _let_go(self, partitions: list[Partition]) -> None:
        leaving = {tp: self._offsets.pop(tp) for tp in partitions if tp in self._offsets}
        if not leaving:
            return
        for lane in self._lanes.values():  # not started: left to the next owner
            kept = deque(item for item in lane.queued if item.tp not in leaving)
            self._buffered -= len(lane.queued) - len(kept)
            lane.queued = kept
            if lane.filling is not None:  # no lingering on: what is left goes now
                lane.filling.set()
        busy = [lane.task for lane in self._lanes.values()
                if lane.task is not None and any(item.tp in leaving for item in lane.working)]
        for lane in self._lanes.values():
            if lane.pausing and lane.task in busy:
                lane.task.cancel()  # waiting out an outage: nothing will finish in the grace period
        if busy:
            _, late = await asyncio.wait(busy, timeout=self._grace_s)
            for task in late:
                log.warning("handler_cut_off", consumer=self._name)
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._committing is not None:
            await asyncio.gather(self._committing, return_exceptions=True)
        await self._commit(leaving)

    async def on_partitions_revoked(self, revoked: list[Partition]) -> None:
        log.info("partitions_revoked", consumer=self._name, partitions=_names(revoked))
        await self._let_go(revoked)

    async def on_partitions_assigned(self, assigned: list[Partition]) -> None:
        log.info("partitions_assigned", consumer=self._name, partitions=_names(assigned))
        self.on_assigned(assigned)

    def on_assigned(self, assigned: list[Partition]) -> None:
        for tp in assigned:
            self._offsets.setdefault(tp, PartitionOffsets())
        if self._paused and assigned:
            self._source.pause(*assigned)


def _names(partitions: Sequence[Partition]) -> list[str]:
    return [f"{tp.topic}:{tp.partition}" for tp in partitions]
