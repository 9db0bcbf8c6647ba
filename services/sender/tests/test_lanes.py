"""The sender's outbound subscription, run by the consumer runtime on an in-memory record source."""

import asyncio
from collections.abc import Callable

from pytake_plumbing.record_source import Partition

from pytake_contracts import Event, OutboundMessageRequested, RegistryChanged, encode_event
from pytake_contracts.topics import DEAD_LETTERS, MESSAGES_OUTBOUND, TopicSpec
from pytake_devstack.fake_records import FakeRecordSource
from pytake_plumbing.consumer import Consumer
from pytake_plumbing.settings import CommonSettings
from pytake_sender.entrypoints.kafka import outbound_requests
from sender_fakes import ORG

SETTINGS = CommonSettings.model_validate({"PYTAKE_NAMESPACE": "unitsender"})
TOPIC = SETTINGS.topic(MESSAGES_OUTBOUND)


class DeadLetters:
    def __init__(self) -> None:
        self.letters: list[Event] = []

    async def publish(self, spec: TopicSpec, event: Event, key: str) -> None:
        assert spec == DEAD_LETTERS
        self.letters.append(event)


def put(source: FakeRecordSource, contact: str, body: str, partition: int = 0) -> None:
    event = OutboundMessageRequested(correlation_id="c", producer="flow-engine", organization_id=ORG, payload={
        "phone_number_id": "100", "to": {"wa_id": contact}, "message": {"type": "text", "body": body}})
    # Keyed as the flow engine keys it: organization and contact, a conversation.
    source.put(TOPIC, encode_event(event), partition=partition, key=f"{ORG}:p:{contact}".encode())


async def until(condition: Callable[[], bool]) -> None:
    async def wait() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(wait(), 5.0)


async def test_a_waiting_conversation_holds_up_no_other_and_keeps_its_order() -> None:
    source, letters, handled = FakeRecordSource(), DeadLetters(), []
    first_may_finish = asyncio.Event()

    async def send(event: OutboundMessageRequested) -> str:
        if event.payload.message.body == "A1":
            await first_may_finish.wait()  # e.g. backing off after a throttle
        handled.append(event.payload.message.body)
        return "sent"

    consumer = Consumer(SETTINGS, outbound_requests(send), dead_letters=letters, source=source)
    for contact, body in [("1", "A1"), ("2", "B1"), ("1", "A2"), ("2", "B2")]:
        put(source, contact, body)
    await consumer.start()
    await until(lambda: handled == ["B1", "B2"])
    # A commit made after B's work (another partition's) leaves this one alone: A1 at offset 0 is unfinished.
    put(source, "3", "C1", partition=1)
    await source.committed_up_to({Partition(TOPIC, 1): 1})
    assert Partition(TOPIC, 0) not in source.committed
    first_may_finish.set()
    await source.all_committed()
    await consumer.stop()
    assert handled == ["B1", "B2", "C1", "A1", "A2"]
    assert source.committed[Partition(TOPIC, 0)] == 4 and letters.letters == []


async def test_other_events_on_the_topic_are_skipped_and_undecodable_ones_dead_lettered() -> None:
    source, letters, handled = FakeRecordSource(), DeadLetters(), []

    async def send(event: OutboundMessageRequested) -> str:
        handled.append(event.payload.message.body)
        return "sent"

    consumer = Consumer(SETTINGS, outbound_requests(send), dead_letters=letters, source=source)
    other = RegistryChanged(correlation_id="c", producer="router", organization_id=ORG,
                            payload={"entity": "number", "entity_id": ORG, "change": "updated"})
    source.put(TOPIC, encode_event(other), b"not an event", key=b"k")
    put(source, "1", "A1")
    await consumer.start()
    await source.all_committed()
    await consumer.stop()
    assert handled == ["A1"]  # a wrong event type reaches the sender's handler never
    (letter,) = letters.letters
    assert letter.payload.original == "not an event"  # type: ignore[attr-defined]
