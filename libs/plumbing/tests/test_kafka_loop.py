"""The consumer loop: batches handed over as they come, committed after the handler returns,
delivered again when it raises; stopping finishes the batch in hand."""

import asyncio

from aiokafka import TopicPartition

from pytake_contracts.topics import WEBHOOK_INBOUND
from pytake_devstack.fake_records import FakeRecordSource
from pytake_plumbing.kafka_loop import BatchLoop
from pytake_plumbing.settings import CommonSettings

SETTINGS = CommonSettings.model_validate({"PYTAKE_NAMESPACE": "unitloop"})
TOPIC = SETTINGS.topic(WEBHOOK_INBOUND)
TP = TopicPartition(TOPIC, 0)


def loop_with(handler, source: FakeRecordSource, max_records: int = 500) -> BatchLoop:  # type: ignore[no-untyped-def]
    return BatchLoop(SETTINGS, [WEBHOOK_INBOUND], group="router", handler=handler, max_records=max_records,
                     source=source)


async def test_records_are_handled_in_order_and_committed_after_the_handler() -> None:
    source, seen = FakeRecordSource(), []

    async def handler(records) -> None:  # type: ignore[no-untyped-def]
        assert source.committed.get(TP, 0) <= records[0].offset  # nothing committed before it is handled
        seen.extend(r.value for r in records)

    loop = loop_with(handler, source, max_records=2)
    await loop.start()
    source.put(TOPIC, b"a", b"b", b"c")
    await source.all_committed()
    source.put(TOPIC, b"d")
    await source.all_committed()
    await loop.stop()
    assert seen == [b"a", b"b", b"c", b"d"]
    assert source.committed == {TP: 4} and source.topics == [TOPIC] and source.stopped


async def test_a_lone_record_is_handed_over_at_once() -> None:
    source, handed = FakeRecordSource(), asyncio.Event()

    async def handler(records) -> None:  # type: ignore[no-untyped-def]
        handed.set()

    loop = loop_with(handler, source)
    await loop.start()
    await asyncio.sleep(0.05)  # the loop is waiting in its fetch
    source.put(TOPIC, b"x")
    await asyncio.wait_for(handed.wait(), 0.5)  # well under the fetch timeout: no poll interval
    await loop.stop()


async def test_a_failed_batch_is_delivered_again_from_its_first_record() -> None:
    source, calls = FakeRecordSource(), []

    async def handler(records) -> None:  # type: ignore[no-untyped-def]
        calls.append([r.offset for r in records])
        if len(calls) == 1:
            raise RuntimeError("store away")

    loop = loop_with(handler, source)
    await loop.start()
    source.put(TOPIC, b"a", b"b")
    await source.all_committed()
    await loop.stop()
    assert calls == [[0, 1], [0, 1]] and source.seeks == [(TP, 0)] and source.committed == {TP: 2}


async def test_stop_waits_for_the_batch_in_hand_and_commits_it() -> None:
    source, started, release = FakeRecordSource(), asyncio.Event(), asyncio.Event()

    async def handler(records) -> None:  # type: ignore[no-untyped-def]
        started.set()
        await release.wait()

    loop = loop_with(handler, source)
    await loop.start()
    source.put(TOPIC, b"a")
    await started.wait()
    stopping = asyncio.create_task(loop.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done() and source.committed == {}
    release.set()
    await stopping
    assert source.committed == {TP: 1} and source.stopped
