"""Routing on real Kafka: known numbers are routed with their tenant, unknown ones are
unroutable with the reason, and registry changes reach every router replica while
messages flow, without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from pytake_contracts import Event, InboundMessageReceived, StatusReceived, decode_event, encode_event
from pytake_contracts.topics import MESSAGES_ROUTED, MESSAGES_UNROUTABLE, STATUSES_ROUTED, WEBHOOK_INBOUND
from pytake_devstack.kafka_io import TopicReader, Writer
from pytake_devstack.stack import Stack, free_port

from .tenancy_support import Api, new_phone_number_id, pipeline_router, routed_tenant
from .waiting import eventually

pytestmark = pytest.mark.integration


class Outcomes:
    """Reads what the router published, keyed by the correlation id of the webhook event."""

    def __init__(self, settings) -> None:
        self._reader = TopicReader(settings.kafka_bootstrap_servers, [
            settings.topic(MESSAGES_ROUTED), settings.topic(MESSAGES_UNROUTABLE), settings.topic(STATUSES_ROUTED)],
            start="beginning")
        self.seen: dict[str, Event] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Outcomes:
        await self._reader.start()
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._reader.stop()

    async def _read(self) -> None:
        while True:
            for record in await self._reader.poll(timeout_s=0.5):
                try:
                    event = decode_event(record.value)
                except ValueError:
                    continue  # another test's poison record (dead-letter tests share these topics)
                self.seen[event.correlation_id] = event

    async def of(self, correlation_ids: list[str], timeout_s: float = 60.0) -> list[Event]:
        async def probe() -> list[Event | None]:
            return [self.seen.get(c) for c in correlation_ids]

        found = await eventually(probe, lambda events: all(e is not None for e in events), timeout_s=timeout_s)
        return [e for e in found if e is not None]


def inbound(phone_number_id: str, contact: str, text: str = "hi") -> InboundMessageReceived:
    return InboundMessageReceived(correlation_id=uuid4().hex, producer="test", payload={
        "phone_number_id": phone_number_id, "contact": {"wa_id": contact},
        "message": {"wamid": f"wamid.test.{uuid4().hex}", "type": "text", "timestamp": 1764000000, "text": text}})


def status(phone_number_id: str) -> StatusReceived:
    return StatusReceived(correlation_id=uuid4().hex, producer="test", payload={
        "phone_number_id": phone_number_id, "wamid": f"wamid.out.{uuid4().hex}", "status": "delivered",
        "timestamp": 1764000000, "recipient": {"wa_id": "15550001111"}})


@contextlib.asynccontextmanager
async def producer(settings) -> AsyncIterator[Writer]:
    async with Writer(settings.kafka_bootstrap_servers) as kafka:
        yield kafka


async def send(kafka: Writer, settings, event: Event) -> str:
    payload = event.payload
    contact = getattr(payload, "contact", None) or getattr(payload, "recipient", None)
    await kafka.send(settings.topic(WEBHOOK_INBOUND), encode_event(event),
                     key=f"{payload.phone_number_id}:{contact.key}".encode())
    return event.correlation_id


@pytest.fixture(scope="module")
async def api(pipeline) -> AsyncIterator[Api]:
    async with pipeline_router(pipeline) as running:
        yield running


async def test_known_number_is_routed_to_its_tenant_and_chatbot(pipeline, settings, api) -> None:
    tenant = await routed_tenant(api, pipeline)
    phone = tenant["number"]["phone_number_id"]
    async with Outcomes(settings) as outcomes, producer(settings) as kafka:
        message_id = await send(kafka, settings, inbound(phone, "15550000001"))
        status_id = await send(kafka, settings, status(phone))
        routed, status_routed = await outcomes.of([message_id, status_id])
    assert routed.event_type == "message.inbound_routed"
    assert routed.organization_id == UUID(tenant["org_id"])
    assert routed.payload.route.chatbot_id == UUID(tenant["chatbot"]["id"])
    assert routed.payload.route.flow_id == UUID(tenant["flow_id"])
    assert status_routed.event_type == "message.status_routed"
    assert status_routed.organization_id == UUID(tenant["org_id"])


async def test_start_keyword_routes_to_its_chatbot(pipeline, settings, api) -> None:
    tenant = await routed_tenant(api, pipeline)
    keyword_flow = await api.new_flow(tenant["admin"])
    sales = (await api.call("POST", "/api/v1/chatbots", tenant["admin"], json={
        "number_id": tenant["number"]["id"], "name": "Sales", "flow_id": keyword_flow,
        "start_keywords": ["Order Now"]})).json()
    phone = tenant["number"]["phone_number_id"]
    async with Outcomes(settings) as outcomes, producer(settings) as kafka:
        keyword = await send(kafka, settings, inbound(phone, "15550000002", "  order   now "))
        other = await send(kafka, settings, inbound(phone, "15550000002", "hello"))
        by_keyword, by_default = await outcomes.of([keyword, other])
    assert by_keyword.payload.route.chatbot_id == UUID(sales["id"])
    assert by_keyword.payload.route.flow_id == UUID(keyword_flow)
    assert by_default.payload.route.chatbot_id == UUID(tenant["chatbot"]["id"])


async def test_unknown_number_is_unroutable_with_the_reason(pipeline, settings) -> None:
    async with Outcomes(settings) as outcomes, producer(settings) as kafka:
        unknown = new_phone_number_id()
        correlation = await send(kafka, settings, inbound(unknown, "15550000003"))
        (event,) = await outcomes.of([correlation])
    assert event.event_type == "message.unroutable"
    assert event.payload.reason == "unknown_number"
    assert event.payload.phone_number_id == unknown
    assert event.payload.original["correlation_id"] == correlation


async def test_an_event_signed_by_another_app_than_the_number_s_is_unroutable(pipeline, settings, api) -> None:
    # The gateway already holds such parts back; the router refuses them too, whoever put them on the topic.
    tenant = await routed_tenant(api, pipeline)
    phone, own_app = tenant["number"]["phone_number_id"], tenant["number"]["meta_app_id"]

    def signed_by(event: Event, meta_app_id: str) -> Event:
        return event.model_copy(update={"payload": event.payload.model_copy(update={"meta_app_id": meta_app_id})})

    async with Outcomes(settings) as outcomes, producer(settings) as kafka:
        foreign = [await send(kafka, settings, signed_by(inbound(phone, "15550000004"), "1" + own_app)),
                   await send(kafka, settings, signed_by(status(phone), "1" + own_app))]
        own = await send(kafka, settings, signed_by(inbound(phone, "15550000004"), own_app))
        refused_message, refused_status, routed = await outcomes.of([*foreign, own])
    for event in (refused_message, refused_status):
        assert event.event_type == "message.unroutable" and event.organization_id is None
        assert event.payload.reason == "number_not_bound_to_app"
    assert routed.event_type == "message.inbound_routed" and routed.organization_id == UUID(tenant["org_id"])


async def test_deactivation_while_messages_flow_reaches_every_replica(pipeline, settings, api) -> None:
    tenant = await routed_tenant(api, pipeline)
    phone = tenant["number"]["phone_number_id"]
    router_pid = pipeline.processes["router"].pid
    # A second router replica: the webhook partitions are shared between the two.
    replica = Stack(env=pipeline.env, log_dir=Path(pipeline.log_dir) / f"replica-{secrets.token_hex(3)}",
                    ports={**pipeline.ports, "router": free_port()})
    await asyncio.to_thread(replica.start, ["router"])
    sent: list[tuple[str, float]] = []  # (correlation id, loop time when acknowledged)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def stream(kafka: Writer) -> None:
        contacts = [f"1555000{i:04d}" for i in range(12)]  # several keys, so several partitions
        i = 0
        while not stop.is_set():
            correlation = await send(kafka, settings, inbound(phone, contacts[i % len(contacts)], f"m{i}"))
            sent.append((correlation, loop.time()))
            i += 1
            await asyncio.sleep(0.02)

    try:
        async with Outcomes(settings) as outcomes, producer(settings) as kafka, \
                contextlib.AsyncExitStack() as cleanup:
            flowing = asyncio.create_task(stream(kafka))
            cleanup.callback(flowing.cancel)
            replica_log = replica.log_dir / "router.log"

            def replica_routed() -> bool:
                text = replica_log.read_text() if replica_log.exists() else ""
                return any(c in text for c, _ in sent)

            async def routed_by_replica() -> bool:
                return replica_routed()

            # Both replicas are routing this number's messages (so both cache its route).
            await eventually(routed_by_replica, bool, timeout_s=90)
            before = [c for c, _ in sent]
            routed_before = await outcomes.of(before)
            assert all(e.event_type == "message.inbound_routed" for e in routed_before)

            changed = await api.call("PATCH", f"/api/v1/numbers/{tenant['number']['id']}", tenant["admin"],
                                     json={"active": False})
            assert changed.status_code == 200 and changed.json()["active"] is False
            deactivated_at = loop.time()

            async def after_deactivation() -> list[Event]:
                later = [c for c, at in sent if at > deactivated_at]
                return [outcomes.seen[c] for c in later if c in outcomes.seen]

            # Soon every new message is unroutable because the number is inactive, on both replicas.
            await eventually(after_deactivation, lambda events: len(events) >= 40 and all(
                e.event_type == "message.unroutable" for e in events[-30:]), timeout_s=60)
            reactivated = await api.call("PATCH", f"/api/v1/numbers/{tenant['number']['id']}", tenant["admin"],
                                         json={"active": True})
            assert reactivated.status_code == 200
            reactivated_at = loop.time()

            async def after_reactivation() -> list[Event]:
                return [outcomes.seen[c] for c, at in sent if at > reactivated_at and c in outcomes.seen]

            await eventually(after_reactivation, lambda events: len(events) >= 30 and all(
                e.event_type == "message.inbound_routed" for e in events[-20:]), timeout_s=60)
            stop.set()
            await flowing
            # None was dropped: every message is either routed or unroutable with the reason.
            every = await outcomes.of([c for c, _ in sent])
            kinds = {e.event_type for e in every}
            assert kinds == {"message.inbound_routed", "message.unroutable"}
            assert {e.payload.reason for e in every if e.event_type == "message.unroutable"} == {"inactive_number"}
    finally:
        stop.set()
        await asyncio.to_thread(replica.stop)
    # No restart was needed, and each replica dropped the route because of the announcement.
    assert pipeline.processes["router"].pid == router_pid and pipeline.processes["router"].poll() is None
    for log in (Path(pipeline.log_dir) / "router.log", replica.log_dir / "router.log"):
        assert any('"route_cache_invalidated"' in line and phone in line for line in log.read_text().splitlines()), log
