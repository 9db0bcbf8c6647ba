"""The audit's subscription, run by the consumer runtime on an in-memory record source: batches written
in one call, outages waited out, refusals dead-lettered, two lanes writing at once, a log line per event."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from typing import Any
from uuid import uuid4

from pytake_plumbing.record_source import Partition
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from pytake_audit.entrypoints import kafka
from pytake_plumbing import handled_log
from pytake_audit.samples import T0, inbound
from pytake_audit.service.record import RetentionPolicy
from pytake_audit.settings import AuditSettings
from pytake_contracts import DeadLettered, Event, encode_event
from pytake_contracts.topics import DEAD_LETTERS, MESSAGES_ROUTED, TopicSpec
from pytake_devstack.fake_records import FakeRecordSource
from pytake_plumbing.consumer import Consumer

SETTINGS = AuditSettings.model_validate({"PYTAKE_NAMESPACE": "unitaudit"})
TOPIC = SETTINGS.topic(MESSAGES_ROUTED)


class Store:
    """An EventStore keeping the event ids of each write; `fail` may raise instead."""

    def __init__(self, fail: Any = None) -> None:
        self.calls: list[list[str]] = []
        self._fail = fail

    async def insert_events(self, documents: Sequence[dict[str, Any]]) -> int:
        ids = [document["_id"] for document in documents]
        if self._fail is not None:
            await self._fail(ids)
        self.calls.append(ids)
        return len(ids)

    @property
    def written(self) -> list[str]:
        return [event_id for call in self.calls for event_id in call]


class NoRetentionChoices:
    async def all(self) -> dict[str, int]:
        return {}


class DeadLetters:
    def __init__(self) -> None:
        self.letters: list[tuple[TopicSpec, DeadLettered]] = []

    async def publish(self, spec: TopicSpec, event: Event, key: str) -> None:
        assert isinstance(event, DeadLettered)
        self.letters.append((spec, event))


def audit(store: Store, source: FakeRecordSource, letters: DeadLetters) -> Consumer:
    (consumer,) = kafka.consumers(SETTINGS, store, RetentionPolicy(NoRetentionChoices(), 365), letters,
                                  source=source)
    return consumer


def events(n: int) -> list[Event]:
    org = uuid4()
    return [inbound(org, "15550001111", f"m{i}", T0) for i in range(n)]


def ids(batch: Sequence[Event]) -> list[str]:
    return [str(event.event_id) for event in batch]


async def run(consumer: Consumer, source: FakeRecordSource) -> None:
    """Until everything put in is written (or dead-lettered) and committed."""
    await consumer.start()
    try:
        await source.all_committed()
    finally:
        await consumer.stop()


async def test_a_batch_is_written_in_one_call_and_poison_is_dead_lettered() -> None:
    store, source, letters = Store(), FakeRecordSource(), DeadLetters()
    good = events(3)
    source.put(TOPIC, encode_event(good[0]), b'{"poison"', encode_event(good[1]), encode_event(good[2]))
    await run(audit(store, source, letters), source)
    assert store.calls == [ids(good)]
    ((spec, letter),) = letters.letters
    assert spec == DEAD_LETTERS and letter.payload.consumer == "audit" and letter.payload.origin_topic == TOPIC
    assert letter.payload.error.startswith("undecodable") and letter.payload.original == '{"poison"'


async def test_a_store_outage_pauses_and_the_same_events_are_written_again() -> None:
    source, letters = FakeRecordSource(), DeadLetters()
    attempts: list[list[str]] = []

    async def down_twice(written: list[str]) -> None:
        attempts.append(written)
        assert source.committed == {}  # nothing is committed while the store is away
        if len(attempts) <= 2:
            raise ServerSelectionTimeoutError("mongo down")

    store = Store(down_twice)
    batch = events(2)
    source.put(TOPIC, *(encode_event(e) for e in batch))
    await run(audit(store, source, letters), source)
    assert attempts == [ids(batch)] * 3 and store.calls == [ids(batch)]
    assert letters.letters == []  # waited out, never dead-lettered


async def test_an_event_the_store_refuses_for_good_is_dead_lettered_and_the_rest_written() -> None:
    bad, *rest = events(3)

    async def refuse_bad(written: list[str]) -> None:
        if str(bad.event_id) in written:  # as FerretDB refuses a string PostgreSQL cannot store
            raise OperationFailure("ERROR: unsupported Unicode escape sequence (SQLSTATE 22P05)")

    store, source, letters = Store(refuse_bad), FakeRecordSource(), DeadLetters()
    source.put(TOPIC, *(encode_event(e) for e in [bad, *rest]))
    await run(audit(store, source, letters), source)
    assert store.written == ids(rest)
    ((_, letter),) = letters.letters
    assert json.loads(letter.payload.original)["event_id"] == str(bad.event_id)
    assert letter.payload.attempts == 5 and "SQLSTATE 22P05" in letter.payload.error


async def test_two_lanes_of_partitions_write_at_once_each_in_order() -> None:
    both_writing = asyncio.Barrier(2)

    async def wait_for_the_other_lane(written: list[str]) -> None:
        # With one lane the second write would wait for the first, and this times out.
        await asyncio.wait_for(both_writing.wait(), 2)

    store, source, letters = Store(wait_for_the_other_lane), FakeRecordSource(), DeadLetters()
    first, second = events(2), events(2)
    source.put(TOPIC, *(encode_event(e) for e in first), partition=0)
    source.put(TOPIC, *(encode_event(e) for e in second), partition=1)
    await run(audit(store, source, letters), source)
    assert sorted(store.calls) == sorted([ids(first), ids(second)])
    assert source.committed == {Partition(TOPIC, 0): 2, Partition(TOPIC, 1): 2}


async def test_each_written_event_gets_its_log_line_with_its_correlation_id(capsys, caplog) -> None:
    caplog.set_level(logging.INFO, logger=handled_log.LOGGER)
    store, source, letters = Store(), FakeRecordSource(), DeadLetters()
    good = events(2)
    source.put(TOPIC, b'{"poison"', *(encode_event(e) for e in good))
    await run(audit(store, source, letters), source)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"event_handled"' in line]
    # The dead-lettered record (offset 0) has no line: it was not written.
    assert [(line["event_id"], line["offset"]) for line in lines] == [(str(e.event_id), i + 1)
                                                                      for i, e in enumerate(good)]
    assert all(line["correlation_id"] == e.correlation_id and line["level"] == "info" and line["topic"] == TOPIC
               and line["event_type"] == "message.inbound_routed" for line, e in zip(lines, good, strict=True))
