"""The consumer runtime: batches as they come, one failure policy, offsets committed only after the work,
lanes, backpressure, rebalances, stopping and broadcasts (on an in-memory record source)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from uuid import UUID, uuid4

from pytake_contracts import Event, RegistryChanged, RegistryChangedPayload, encode_event
from pytake_contracts.topics import DEAD_LETTERS, REGISTRY_CHANGES, WEBHOOK_INBOUND, TopicSpec
from pytake_devstack.fake_records import FakeRecordSource
from pytake_plumbing.backoff import Backoff
from pytake_plumbing.consumer import BY_KEY, Consumer, PartitionOffsets, Subscription, each
from pytake_plumbing.messaging import PermanentError
from pytake_plumbing.record_source import Partition
from pytake_plumbing.settings import CommonSettings

SETTINGS = CommonSettings.model_validate({"PYTAKE_NAMESPACE": "unitconsumer"})
TOPIC = SETTINGS.topic(WEBHOOK_INBOUND)
TP0, TP1 = Partition(TOPIC, 0), Partition(TOPIC, 1)
QUICK = Backoff(base_s=0.001, max_s=0.005)


class DeadLetters:
    def __init__(self) -> None:
        self.letters: list[tuple[TopicSpec, Event, str]] = []

    async def publish(self, spec: TopicSpec, event: Event, key: str) -> None:
        self.letters.append((spec, event, key))


def event(n: int, org: UUID | None = None) -> RegistryChanged:
    return RegistryChanged(correlation_id=f"corr-{n}", producer="router", organization_id=org or uuid4(),
                           payload=RegistryChangedPayload(entity="number", entity_id=uuid4(), change="updated",
                                                          phone_number_id=str(n)))


def number(e: Event) -> int:
    assert isinstance(e, RegistryChanged) and e.payload.phone_number_id
    return int(e.payload.phone_number_id)


def consumer(handler, source: FakeRecordSource, letters: DeadLetters | None = None,  # type: ignore[no-untyped-def]
             **options) -> Consumer:
    limits = {key: options.pop(key) for key in ("max_buffered", "grace_s") if key in options}
    subscription = Subscription([WEBHOOK_INBOUND], group="router", handler=handler, backoff=QUICK, **options)
    return Consumer(SETTINGS, subscription, dead_letters=letters or DeadLetters(), source=source, **limits)


def put(source: FakeRecordSource, *numbers: int, partition: int = 0, key: bytes | None = None) -> None:
    source.put(TOPIC, *(encode_event(event(n)) for n in numbers), partition=partition, key=key)


async def test_a_backlog_comes_in_batches_in_order_committed_only_after_the_handler() -> None:
    source, calls = FakeRecordSource(), []

    async def handler(events: Sequence[Event]) -> None:
        first_offset = sum(len(call) for call in calls)
        assert source.committed.get(TP0, 0) <= first_offset  # nothing committed ahead of the work
        calls.append([number(e) for e in events])

    runtime = consumer(handler, source, batch=2)
    put(source, 1, 2, 3)
    await runtime.start()
    await source.all_committed()
    put(source, 4)
    await source.all_committed()
    await runtime.stop()
    assert calls == [[1, 2], [3], [4]]
    assert source.committed == {TP0: 4} and source.stopped


async def test_a_lone_record_is_handed_over_at_once() -> None:
    source, handed = FakeRecordSource(), asyncio.Event()

    async def handler(events: Sequence[Event]) -> None:
        handed.set()

    runtime = consumer(handler, source)
    await runtime.start()
    await asyncio.sleep(0.05)  # the fetch loop is waiting in its (one-second) fetch
    put(source, 1)
    await asyncio.wait_for(handed.wait(), 0.5)  # well under the fetch timeout: no poll interval
    await runtime.stop()


async def test_a_lingering_lane_waits_for_a_full_batch_or_its_linger() -> None:
    source, calls, handed = FakeRecordSource(), [], asyncio.Event()

    async def handler(events: Sequence[Event]) -> None:
        calls.append([number(e) for e in events])
        handed.set()

    runtime = consumer(handler, source, batch=3, linger_s=30)
    await runtime.start()
    put(source, 1)
    await asyncio.sleep(0.05)
    assert calls == []  # one event: waits for more
    put(source, 2, 3, 4)
    await asyncio.wait_for(handed.wait(), 1)  # a full batch goes at once, long before the linger is up
    assert calls[0] == [1, 2, 3]
    await runtime.stop()  # the lingering rest is left uncommitted, for the next reader
    assert calls == [[1, 2, 3]] and source.committed == {TP0: 3}


async def test_a_full_buffer_ends_the_linger() -> None:
    source, handed = FakeRecordSource(), asyncio.Event()

    async def handler(events: Sequence[Event]) -> None:
        handed.set()

    runtime = consumer(handler, source, batch=100, linger_s=30, max_buffered=3)
    put(source, 1, 2, 3)
    await runtime.start()
    await asyncio.wait_for(handed.wait(), 2)  # reading paused: waiting for more would wait for nothing
    await runtime.stop()


async def test_a_short_linger_hands_over_what_came() -> None:
    source, handed = FakeRecordSource(), asyncio.Event()
    calls: list[list[int]] = []

    async def handler(events: Sequence[Event]) -> None:
        calls.append([number(e) for e in events])
        handed.set()

    runtime = consumer(handler, source, batch=100, linger_s=0.05)
    await runtime.start()
    put(source, 1, 2)
    await asyncio.wait_for(handed.wait(), 1)
    await source.all_committed()
    await runtime.stop()
    assert calls == [[1, 2]]


async def test_an_outage_pauses_the_lane_and_the_same_events_are_handed_again() -> None:
    source, calls = FakeRecordSource(), []

    async def handler(events: Sequence[Event]) -> None:
        calls.append([number(e) for e in events])
        if len(calls) < 3:
            raise ConnectionError("store away")

    letters = DeadLetters()
    runtime = consumer(handler, source, letters)
    put(source, 1, 2)
    await runtime.start()
    await source.all_committed()
    await runtime.stop()
    assert calls == [[1, 2], [1, 2], [1, 2]] and letters.letters == []  # waited out: never dead-lettered


async def test_a_poison_event_is_dead_lettered_alone_and_the_rest_of_its_batch_handled() -> None:
    source, handled = FakeRecordSource(), []

    async def handler(events: Sequence[Event]) -> None:
        if any(number(e) == 2 for e in events):
            raise ValueError("cannot handle 2")
        if any(number(e) == 4 for e in events):
            raise PermanentError("4 is refused for good")
        handled.extend(number(e) for e in events)

    letters = DeadLetters()
    runtime = consumer(handler, source, letters, max_attempts=3)
    put(source, 1, 2, 3, 4, 5)
    await runtime.start()
    await source.all_committed()
    await runtime.stop()
    assert handled == [1, 3, 5]
    reasons = [(letter.payload.error, letter.payload.attempts, letter.correlation_id)
               for spec, letter, _ in letters.letters if spec is DEAD_LETTERS]
    assert reasons == [("ValueError: cannot handle 2", 3, "corr-2"),
                       ("PermanentError: 4 is refused for good", 1, "corr-4")]


async def test_undecodable_records_are_dead_lettered_and_other_events_skipped() -> None:
    source, handled = FakeRecordSource(), []

    async def handler(events: Sequence[Event]) -> None:
        handled.extend(number(e) for e in events)

    letters = DeadLetters()
    runtime = consumer(handler, source, letters, accepts=(RegistryChanged,))
    source.put(TOPIC, b'{"poison"', encode_event(event(1)))
    await runtime.start()
    await source.all_committed()
    await runtime.stop()
    ((spec, letter, key),) = letters.letters
    assert spec is DEAD_LETTERS and key == TOPIC
    assert letter.payload.error.startswith("undecodable") and letter.payload.original == '{"poison"'
    assert handled == [1]


async def test_a_waiting_key_holds_up_no_other_and_offsets_stop_at_the_lowest_unfinished() -> None:
    source, release, seen = FakeRecordSource(), asyncio.Event(), []

    async def send(e: Event) -> None:
        if number(e) == 1:
            await release.wait()
        seen.append(number(e))

    runtime = consumer(each(send), source, batch=1, lanes=BY_KEY)
    put(source, 1, key=b"slow")
    put(source, 2, 3, key=b"fast")
    put(source, 4, key=b"slow")
    await runtime.start()
    await asyncio.wait_for(_until(lambda: seen == [2, 3]), 2)
    assert source.committed.get(TP0, 0) == 0  # offset 0 (key "slow") is unfinished
    release.set()
    await source.all_committed()
    await runtime.stop()
    assert seen == [2, 3, 1, 4] and source.committed == {TP0: 4}


async def test_a_full_buffer_pauses_fetching_until_the_lanes_catch_up() -> None:
    source, release, seen = FakeRecordSource(), asyncio.Event(), []

    async def handler(events: Sequence[Event]) -> None:
        await release.wait()
        seen.extend(number(e) for e in events)

    runtime = consumer(handler, source, batch=1, max_buffered=2)
    put(source, *range(6))
    await runtime.start()
    await asyncio.wait_for(_until(lambda: source.paused == {TP0}), 2)
    assert runtime.buffered == 2
    release.set()
    await source.all_committed()
    await runtime.stop()
    assert seen == list(range(6)) and source.paused == set()


async def test_a_revoked_partition_finishes_its_call_in_hand_commits_and_drops_its_queue() -> None:
    source, started, release, calls = FakeRecordSource(), asyncio.Event(), asyncio.Event(), []

    async def handler(events: Sequence[Event]) -> None:
        calls.append([number(e) for e in events])
        started.set()
        await release.wait()

    runtime = consumer(handler, source, batch=1, lanes=BY_KEY)
    put(source, 1, 2, key=b"a")
    await runtime.start()
    await started.wait()
    revoking = asyncio.create_task(source.revoke(TP0))
    await asyncio.sleep(0.02)
    assert not revoking.done() and source.committed == {}  # the call in hand is waited for
    release.set()
    await revoking
    assert source.committed == {TP0: 1} and calls == [[1]]  # record 2 is left to the next owner
    await runtime.stop()
    assert calls == [[1]] and runtime.buffered == 0


async def test_a_call_past_the_grace_period_is_cut_off_and_left_uncommitted() -> None:
    source, started = FakeRecordSource(), asyncio.Event()

    async def handler(events: Sequence[Event]) -> None:
        started.set()
        await asyncio.Event().wait()  # never returns

    runtime = consumer(handler, source, grace_s=0.05)
    put(source, 1)
    await runtime.start()
    await started.wait()
    await runtime.stop()
    assert source.committed == {} and source.stopped


async def test_stop_waits_for_the_call_in_hand_and_commits_it() -> None:
    source, started, release = FakeRecordSource(), asyncio.Event(), asyncio.Event()

    async def handler(events: Sequence[Event]) -> None:
        started.set()
        await release.wait()

    runtime = consumer(handler, source)
    put(source, 1)
    await runtime.start()
    await started.wait()
    stopping = asyncio.create_task(runtime.stop())
    await asyncio.sleep(0.02)
    assert not stopping.done() and source.committed == {}
    release.set()
    await stopping
    assert source.committed == {TP0: 1} and source.stopped


async def test_a_broadcast_reads_every_partition_from_its_start_point_commits_nothing_and_says_when_caught_up(
) -> None:
    source, seen = FakeRecordSource(), []
    topic = SETTINGS.topic(REGISTRY_CHANGES)
    old_ms = int((time.time() - 3600) * 1000)
    source.put(topic, encode_event(event(1)), timestamp_ms=old_ms)  # older than the look-back
    source.put(topic, encode_event(event(2)), b"unreadable", encode_event(event(3)))

    async def apply(e: Event) -> None:
        seen.append(number(e))

    subscription = Subscription([REGISTRY_CHANGES], group="revocations", handler=each(apply), batch=1,
                                broadcast=True, since_s=600)
    runtime = Consumer(SETTINGS, subscription, dead_letters=None, source=source)
    await runtime.start()
    await asyncio.wait_for(runtime.caught_up.wait(), 2)
    source.put(topic, encode_event(event(4)))
    await asyncio.wait_for(_until(lambda: seen == [2, 3, 4]), 2)
    await runtime.stop()
    assert source.committed == {} and source.topics == []  # assigned by hand, no group


def test_offsets_commit_only_up_to_the_lowest_unfinished() -> None:
    offsets = PartitionOffsets()
    for offset in (10, 11, 12):
        offsets.add(offset)
    offsets.finish(11)
    assert offsets.committable is None
    offsets.finish(10)
    assert offsets.committable == 12
    offsets.finish(12)
    assert offsets.committable == 13


async def _until(condition) -> None:  # type: ignore[no-untyped-def]
    while not condition():
        await asyncio.sleep(0.002)
