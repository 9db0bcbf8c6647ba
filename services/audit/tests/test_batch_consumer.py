from __future__ import annotations

from collections.abc import Sequence
from uuid import uuid4

import pytest
from aiokafka import ConsumerRecord
from pymongo.errors import ServerSelectionTimeoutError

from pytake_audit.entrypoints.batch_consumer import BatchConsumer
from pytake_audit.samples import T0, inbound
from pytake_contracts import Event, encode_event
from pytake_contracts.topics import DEAD_LETTERS


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
    consumer = BatchConsumer(publisher, "audit", handler, max_backoff_s=0.01)  # type: ignore[arg-type]
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
    consumer = BatchConsumer(publisher, "audit", handler, max_attempts=2, max_backoff_s=0.01)  # type: ignore[arg-type]
    await consumer.consume([record(encode_event(e), i) for i, e in enumerate([bad, *rest])])
    assert written == rest
    ((_, letter),) = publisher.published
    assert letter.payload.attempts == 2 and "document refused" in letter.payload.error
