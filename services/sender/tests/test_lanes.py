import asyncio
from types import SimpleNamespace

from aiokafka import TopicPartition

from pytake_contracts import OutboundMessageRequested, encode_event
from pytake_sender.entrypoints.outbound_consumer import OutboundConsumer, PartitionOffsets
from sender_fakes import ORG

TP = TopicPartition("outbound", 0)


def _record(offset: int, contact: str, body: str) -> SimpleNamespace:
    event = OutboundMessageRequested(correlation_id="c", producer="flow-engine", organization_id=ORG, payload={
        "phone_number_id": "100", "to": {"wa_id": contact}, "message": {"type": "text", "body": body}})
    return SimpleNamespace(topic="outbound", partition=0, offset=offset, key=f"{ORG}:p:{contact}".encode(),
                           value=encode_event(event))


async def test_a_waiting_conversation_holds_up_no_other_and_keeps_its_order() -> None:
    handled: list[str] = []
    first_may_finish = asyncio.Event()

    async def handler(event: OutboundMessageRequested) -> str:
        if event.payload.message.body == "A1":
            await first_may_finish.wait()  # e.g. backing off after a throttle
        handled.append(event.payload.message.body)
        return "sent"

    async def dead_letter(record, error, attempts) -> None:  # type: ignore[no-untyped-def]
        raise AssertionError(error)

    consumer = OutboundConsumer(bootstrap_servers="unused", topic="outbound", group_id="g", handler=handler,
                                dead_letter=dead_letter)
    offsets = consumer._offsets[TP] = PartitionOffsets()
    for offset, (contact, body) in enumerate([("1", "A1"), ("2", "B1"), ("1", "A2"), ("2", "B2")]):
        consumer._accept(TP, offsets, _record(offset, contact, body))  # type: ignore[arg-type]

    async def b_done() -> None:
        while handled != ["B1", "B2"]:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(b_done(), 5.0)
    assert offsets.committable is None  # A1 (offset 0) still in flight: nothing may be committed
    first_may_finish.set()
    while consumer.buffered:
        await asyncio.sleep(0.01)
    assert handled == ["B1", "B2", "A1", "A2"]
    assert offsets.committable == 4
