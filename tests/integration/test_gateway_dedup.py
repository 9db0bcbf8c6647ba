"""Meta's redeliveries, to one or two gateway replicas, are each stored, and forwarded downstream exactly once
(PostgreSQL receipts, shared by every forwarder)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter

import httpx
import pytest

from pytake_contracts import InboundMessageReceived, StatusReceived, WebhookReceived
from pytake_contracts.topics import WEBHOOK_INTAKE
from pytake_devstack import meta_payloads

from .gateway_processes import start_forwarder, start_gateway
from .test_gateway_kafka import (
    about,
    forward_everything_before,
    forwarded,
    inbound,
    new_phone_number_id,
    post_signed,
    read_topic,
)
from .waiting import eventually

pytestmark = pytest.mark.integration

ACCEPTED = {"status": "accepted", "stored": 1, "ignored": 0}


@pytest.fixture(scope="module")
def replicas(pipeline):
    """The pipeline's gateway and a second `run` replica sharing its Kafka, PostgreSQL and namespace."""
    second = start_gateway(pipeline.env, pipeline.log_dir, "gateway-replica")
    try:
        yield [pipeline.url("gateway"), second.url]
    finally:
        second.stop()


def _status(wamid: str, status: str, timestamp: int) -> dict:
    return {"id": wamid, "status": status, "timestamp": str(timestamp), "recipient_id": "15551234567"}


async def test_one_webhook_delivered_three_times_to_two_replicas_is_forwarded_once(replicas, settings) -> None:
    number, wamid = new_phone_number_id(), meta_payloads.new_wamid()
    body = meta_payloads.encode(meta_payloads.text_message(number, "delivered three times", wamid=wamid))
    async with httpx.AsyncClient(timeout=60) as client:
        answers = [await post_signed(client, url, body) for url in (replicas[0], replicas[1], replicas[0])]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.json() for a in answers] == [ACCEPTED] * 3

        # The front door stores every copy (200 = acknowledged by Kafka); only the forwarder deduplicates.
        intake = await read_topic(settings.kafka_bootstrap_servers, settings.topic(WEBHOOK_INTAKE))
        assert sum(isinstance(e, WebhookReceived) and wamid in e.payload.body for e in intake) == 3

        await forwarded(settings, wamid)
        await forward_everything_before(client, settings, replicas[0], number)
    (message,) = about(await inbound(settings), wamid)
    assert isinstance(message, InboundMessageReceived) and message.payload.phone_number_id == number


async def test_concurrent_redeliveries_to_both_replicas_are_forwarded_once(replicas, settings) -> None:
    number, wamid = new_phone_number_id(), meta_payloads.new_wamid()
    body = meta_payloads.encode(meta_payloads.text_message(number, "delivered at once", wamid=wamid))
    async with httpx.AsyncClient(timeout=60) as client:
        answers = await asyncio.gather(*(post_signed(client, url, body) for url in replicas * 3))
        assert [a.status_code for a in answers] == [200] * 6
        assert all(a.json() == ACCEPTED for a in answers)
        await forwarded(settings, wamid)
        await forward_everything_before(client, settings, replicas[1], number)
    assert len(about(await inbound(settings), wamid)) == 1


async def test_each_status_of_a_message_is_forwarded_once_however_often_it_comes(replicas, settings) -> None:
    number, wamid = new_phone_number_id(), meta_payloads.new_wamid()
    delivered = meta_payloads.encode(meta_payloads.envelope(number, {"statuses": [_status(wamid, "delivered", 10)]}))
    read = meta_payloads.encode(meta_payloads.envelope(number, {"statuses": [_status(wamid, "read", 20)]}))
    # Two copies of one status inside one POST: the first copy wins there too.
    read_twice = meta_payloads.encode(meta_payloads.envelope(number, {"statuses": [
        _status(wamid, "read", 20), _status(wamid, "read", 20)]}))
    async with httpx.AsyncClient(timeout=60) as client:
        answers = await asyncio.gather(
            post_signed(client, replicas[0], delivered), post_signed(client, replicas[1], delivered),
            post_signed(client, replicas[1], read), post_signed(client, replicas[0], read_twice))
        assert [a.status_code for a in answers] == [200] * 4
        # Meta does not keep order: a late `delivered` after `read` is still a redelivery.
        assert (await post_signed(client, replicas[0], delivered)).status_code == 200
        await eventually(lambda: _statuses(settings, wamid), lambda found: len(found) >= 2, timeout_s=60,
                         interval_s=0.3)
        await forward_everything_before(client, settings, replicas[1], number)
    assert sorted(await _statuses(settings, wamid)) == ["delivered", "read"]


async def _statuses(settings, wamid: str) -> list[str]:
    return [e.payload.status for e in about(await inbound(settings), wamid) if isinstance(e, StatusReceived)]


@pytest.fixture
def second_forwarder(pipeline):
    """A second `forward` process in the pipeline's consumer group: the intake partitions are shared out."""
    forwarder = start_forwarder(pipeline.env, pipeline.log_dir, "gateway-forwarder-2")
    try:
        yield forwarder
    finally:
        forwarder.stop()


async def test_two_forwarders_in_one_group_forward_each_message_once(replicas, second_forwarder, settings) -> None:
    # Enough numbers that every intake partition, and so each forwarder, gets some of them.
    numbers = [new_phone_number_id() for _ in range(30)]
    sent: list[str] = []

    async def deliver_round(client: httpx.AsyncClient) -> None:
        """One new message per number, each delivered twice to both replicas at once."""
        bodies = []
        for number in numbers:
            wamid = meta_payloads.new_wamid()
            sent.append(wamid)
            bodies.append(meta_payloads.encode(meta_payloads.text_message(number, "to two forwarders", wamid=wamid)))
        answers = await asyncio.gather(*(post_signed(client, url, body) for body in bodies for url in replicas * 2))
        assert {a.status_code for a in answers} == {200}

    async def second_forwarder_busy(client: httpx.AsyncClient) -> float:
        await deliver_round(client)
        return _forwarded_total((await client.get(second_forwarder.url + "/metrics")).text)

    async with httpx.AsyncClient(timeout=60) as client:
        # Ready is not yet assigned: deliver until the second forwarder has joined and forwarded its share.
        await eventually(lambda: second_forwarder_busy(client), lambda total: total > 0, timeout_s=120,
                         interval_s=0.5)
        # A hand-over under traffic: the second forwarder leaves while another round comes in.
        await asyncio.gather(deliver_round(client), asyncio.to_thread(second_forwarder.stop))
        await deliver_round(client)
        await forward_everything_before(client, settings, replicas[0], *numbers)
    copies = Counter(e.payload.message.wamid for e in await inbound(settings) if isinstance(e, InboundMessageReceived))
    assert {wamid: copies[wamid] for wamid in sent} == {wamid: 1 for wamid in sent}


def _forwarded_total(metrics: str) -> float:
    return sum(float(value) for value in re.findall(r"^pytake_gateway_events_forwarded_total\{[^}]*\} (\S+)$",
                                                    metrics, flags=re.MULTILINE))
