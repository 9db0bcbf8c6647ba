from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from uuid import uuid4

import pytest
from aiokafka import ConsumerRecord
from pymongo.errors import ServerSelectionTimeoutError

from pytake_audit.entrypoints import handled_log
from pytake_plumbing.backoff import Backoff
from pytake_plumbing.batch_consumer import BatchConsumer
from pytake_audit.samples import T0, inbound
from pytake_contracts import Event, encode_event
from pytake_contracts.topics import DEAD_LETTERS
from pytake_plumbing.messaging import PermanentError

QUICK = Backoff(max_s=0.01)


class Publisher:
    def __init__(self) -> None:
        self.published: list[tuple[str, Event]] = []

    async def publish(self, spec, event: Event, key: str) -> None:
        self.published.append((spec.name, event))


def record(value: bytes, offset: int) -> ConsumerRecord:
    return ConsumerRecord(topic="t.pytake.messages.routed", partition=0, offset=offset, timestamp=0,
                          timestamp_type=0, key=b"k", value=value, checksum=None, serialized_key_size=1,
                          serialized_value_size=len(value), headers=[("correlation_id", b"corr-1")])


def events(n: int) -> list[Event]:
    org = uuid4()
    return [inbound(org, "15550001111", f"m{i}", T0) for i in range(n)]


async def test_a_batch_is_written_in_one_call_and_poison_is_dead_lettered() -> None:
    calls: list[list[Event]] = []

    async def handler(batch: Sequence[Event]) -> None:
        calls.append(list(batch))

    publisher = Publisher()
    consumer = BatchConsumer(publisher, "audit", handler)  # type: ignore[arg-type]
    good = events(3)
    await consumer.consume([record(encode_event(good[0]), 0), record(b'{"poison"', 1),
                            record(encode_event(good[1]), 2), record(encode_event(good[2]), 3)])
    assert calls == [good]
    ((topic, letter),) = publisher.published
    assert topic == DEAD_LETTERS.name
    assert letter.payload.error.startswith("undecodable") and letter.payload.original == '{"poison"'
    assert letter.correlation_id == "corr-1"


async def test_a_store_outage_fails_the_batch_so_it_is_redelivered() -> None:
    async def handler(batch: Sequence[Event]) -> None:
        raise ServerSelectionTimeoutError("mongo down")

    publisher = Publisher()
    consumer = BatchConsumer(publisher, "audit", handler, backoff=QUICK)  # type: ignore[arg-type]
    with pytest.raises(ServerSelectionTimeoutError):
        await consumer.consume([record(encode_event(e), i) for i, e in enumerate(events(2))])
    assert publisher.published == []  # nothing dead-lettered: the batch waits for the store


async def test_an_event_the_store_refuses_for_good_is_dead_lettered_and_the_rest_written() -> None:
    bad, *rest = events(3)
    written: list[Event] = []

    async def handler(batch: Sequence[Event]) -> None:
        if bad in batch:
            raise ValueError("document refused")
        written.extend(batch)

    publisher = Publisher()
    consumer = BatchConsumer(publisher, "audit", handler, max_attempts=2, backoff=QUICK)  # type: ignore[arg-type]
    await consumer.consume([record(encode_event(e), i) for i, e in enumerate([bad, *rest])])
    assert written == rest
    ((_, letter),) = publisher.published
    assert letter.payload.attempts == 2 and "document refused" in letter.payload.error


async def test_a_batch_is_written_in_chunks_with_a_bounded_number_in_flight() -> None:
    calls: list[list[Event]] = []
    active, most_active = 0, 0

    async def handler(batch: Sequence[Event]) -> None:
        nonlocal active, most_active
        active += 1
        most_active = max(most_active, active)
        await asyncio.sleep(0.01)
        calls.append(list(batch))
        active -= 1

    consumer = BatchConsumer(Publisher(), "audit", handler, write_chunk=2, writes_in_flight=2)  # type: ignore[arg-type]
    written = events(7)
    await consumer.consume([record(encode_event(e), i) for i, e in enumerate(written)])
    assert sorted(len(chunk) for chunk in calls) == [1, 2, 2, 2]
    assert sorted((e for chunk in calls for e in chunk), key=written.index) == written  # all, once, on return
    assert most_active == 2


async def test_an_outage_in_one_chunk_stops_and_fails_the_batch_once_the_writes_in_flight_end() -> None:
    finished: list[list[Event]] = []
    batch = events(6)

    async def handler(chunk: Sequence[Event]) -> None:
        if batch[2] in chunk:
            raise ServerSelectionTimeoutError("mongo down")
        await asyncio.sleep(0.01)
        finished.append(list(chunk))

    publisher = Publisher()
    consumer = BatchConsumer(publisher, "audit", handler, write_chunk=2, writes_in_flight=3,  # type: ignore[arg-type]
                             backoff=QUICK)
    with pytest.raises(ServerSelectionTimeoutError):
        await consumer.consume([record(encode_event(e), i) for i, e in enumerate(batch)])
    assert finished == [batch[:2]]  # the chunk in flight ended; none started after the failure
    assert publisher.published == []  # the whole batch comes again (what was written is skipped by key)


async def test_each_written_event_gets_its_log_line_with_its_correlation_id(capsys, caplog) -> None:
    caplog.set_level(logging.INFO, logger=handled_log.LOGGER)
    bad, *good = events(3)

    async def handler(batch: Sequence[Event]) -> None:
        if bad in batch:
            raise PermanentError("refused")

    consumer = BatchConsumer(Publisher(), "audit", handler, max_attempts=1,  # type: ignore[arg-type]
                             on_handled=handled_log.write)
    await consumer.consume([record(encode_event(e), i) for i, e in enumerate([bad, *good])])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"event_handled"' in line]
    assert [(line["event_id"], line["offset"]) for line in lines] == [(str(e.event_id), i + 1)
                                                                      for i, e in enumerate(good)]
    assert all(line["correlation_id"] == e.correlation_id and line["level"] == "info"
               and line["event_type"] == "message.inbound_routed" for line, e in zip(lines, good, strict=True))
