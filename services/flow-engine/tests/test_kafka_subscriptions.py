"""The flow engine's subscriptions run by the consumer runtime on an in-memory record source:
routed messages in batches (then the outbox relayed), a poison message dead-lettered alone,
delivery failures one at a time."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from uuid import UUID, uuid4

from pytake_plumbing.record_source import Partition

from pytake_contracts import (
    ContactRef,
    DeadLettered,
    Event,
    InboundMessage,
    InboundMessageRouted,
    MessageFailed,
    MessageFailedPayload,
    RoutedInboundPayload,
    Route,
    encode_event,
)
from pytake_contracts.topics import DEAD_LETTERS, MESSAGES_DELIVERY, MESSAGES_ROUTED, TopicSpec
from pytake_devstack.fake_records import FakeRecordSource
from pytake_flow_engine.entrypoints import kafka
from pytake_flow_engine.settings import FlowEngineSettings
from pytake_plumbing.backoff import Backoff
from pytake_plumbing.consumer import Consumer, Subscription

SETTINGS = FlowEngineSettings.model_validate({"PYTAKE_NAMESPACE": "unitflow", "FLOW_ENGINE_BATCH_MAX_RECORDS": "50"})
ROUTED = SETTINGS.topic(MESSAGES_ROUTED)
DELIVERY = SETTINGS.topic(MESSAGES_DELIVERY)
ORG = UUID("0f0e0d0c-0000-4000-8000-0000000000d1")
POISON = "poison"
QUICK = Backoff(base_s=0.001, max_s=0.005)  # the runtime's retries, without the production waits


class FakeEngine:
    """Records the batches it is handed; a batch holding the poison text fails, as a bug would."""

    def __init__(self) -> None:
        self.batches: list[list[str | None]] = []
        self.failures: list[str] = []

    async def handle_inbound_batch(self, events: Sequence[InboundMessageRouted]) -> int:
        texts = [event.payload.message.text for event in events]
        if POISON in texts:
            raise RuntimeError("flow crashed on this message")
        self.batches.append(texts)
        return len(events)

    async def handle_delivery_failure(self, event: MessageFailed) -> bool:
        self.failures.append(event.payload.error_message)
        return True


class FakeRelay:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.flushed_after: list[int] = []  # how many batches had been handled at each flush

    async def flush(self) -> int:
        self.flushed_after.append(len(self.engine.batches))
        return 0


class DeadLetters:
    def __init__(self) -> None:
        self.letters: list[tuple[TopicSpec, Event, str]] = []

    async def publish(self, spec: TopicSpec, event: Event, key: str) -> None:
        self.letters.append((spec, event, key))


def routed(text: str) -> bytes:
    return encode_event(InboundMessageRouted(
        organization_id=ORG, correlation_id=f"corr-{text}", producer="router",
        payload=RoutedInboundPayload(
            phone_number_id="100000000000009", contact=ContactRef(wa_id="15550000001"),
            message=InboundMessage(wamid=f"wamid.{text}", type="text", timestamp=int(time.time()), text=text),
            route=Route(organization_id=ORG, chatbot_id=None, flow_id=uuid4()))))


def failed(error: str) -> bytes:
    return encode_event(MessageFailed(
        organization_id=ORG, correlation_id=f"corr-{error}", producer="sender",
        payload=MessageFailedPayload(request_id=uuid4(), phone_number_id="100000000000009",
                                     to=ContactRef(wa_id="15550000001"), error_code=131047, error_message=error,
                                     attempts=1)))


def running(subscription: Subscription, source: FakeRecordSource, letters: DeadLetters) -> Consumer:
    return Consumer(SETTINGS, dataclasses.replace(subscription, backoff=QUICK), dead_letters=letters, source=source)


async def test_routed_messages_are_handled_in_one_batch_then_the_outbox_is_relayed() -> None:
    engine, source, letters = FakeEngine(), FakeRecordSource(), DeadLetters()
    relay = FakeRelay(engine)
    subscription = kafka.inbound(engine, relay, batch=SETTINGS.batch_max_records)  # type: ignore[arg-type]
    assert subscription.group == "flow-engine" and subscription.batch == 50
    source.put(ROUTED, *(routed(f"m{n}") for n in range(5)))
    consumer = running(subscription, source, letters)
    await consumer.start()
    await source.all_committed()
    await consumer.stop()
    assert source.topics == [ROUTED]
    assert engine.batches == [["m0", "m1", "m2", "m3", "m4"]]  # one call, one transaction
    assert relay.flushed_after == [1]  # relayed right after the batch was applied
    assert letters.letters == []


async def test_a_poison_message_is_dead_lettered_alone_and_the_rest_go_through() -> None:
    engine, source, letters = FakeEngine(), FakeRecordSource(), DeadLetters()
    subscription = kafka.inbound(engine, FakeRelay(engine), batch=50)  # type: ignore[arg-type]
    poison = routed(POISON)
    source.put(ROUTED, routed("a"), poison, routed("b"), b"not an event", partition=1)
    consumer = running(subscription, source, letters)
    await consumer.start()
    await source.all_committed()
    await consumer.stop()
    assert engine.batches == [["a"], ["b"]]  # the failed batch was retried one by one
    assert source.committed == {Partition(ROUTED, 1): 4}
    assert all(spec == DEAD_LETTERS and key == ROUTED for spec, _, key in letters.letters)
    dead = [letter for _, letter, _ in letters.letters if isinstance(letter, DeadLettered)]
    reasons = {letter.payload.original: letter.payload for letter in dead}
    assert set(reasons) == {poison.decode(), "not an event"}
    given_up = reasons[poison.decode()]
    assert "flow crashed on this message" in given_up.error and given_up.attempts == 5  # retried, then given up
    assert given_up.consumer == "flow-engine" and reasons["not an event"].error.startswith("undecodable")


async def test_delivery_failures_are_handled_one_at_a_time_in_a_group_of_their_own() -> None:
    engine, source, letters = FakeEngine(), FakeRecordSource(), DeadLetters()
    relay = FakeRelay(engine)
    subscription = kafka.delivery_failures(engine, relay)  # type: ignore[arg-type]
    assert subscription.group == "flow-engine.delivery" and subscription.batch == 1
    source.put(DELIVERY, failed("window closed 1"), failed("window closed 2"), routed("not a failure"))
    consumer = running(subscription, source, letters)
    await consumer.start()
    await source.all_committed()
    await consumer.stop()
    assert engine.failures == ["window closed 1", "window closed 2"]  # another event on the topic: skipped
    assert len(relay.flushed_after) == 2 and letters.letters == []
