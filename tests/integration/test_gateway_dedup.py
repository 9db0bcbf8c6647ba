"""Meta's redeliveries, to one or two gateway replicas, reach Kafka exactly once (PostgreSQL-backed dedup)."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import pytest

from pytake_contracts import InboundMessageReceived, StatusReceived
from pytake_contracts.topics import WEBHOOK_INBOUND
from pytake_devstack import meta_payloads
from pytake_devstack.demo_tenant import DEMO_TENANT

from .gateway_processes import start_gateway
from .test_gateway_kafka import read_topic
from .waiting import eventually

pytestmark = pytest.mark.integration

PATH = "/api/v1/webhooks/whatsapp"


@pytest.fixture(scope="module")
def replicas(pipeline):
    """The pipeline's gateway and a second replica sharing its Kafka, PostgreSQL and namespace."""
    second = start_gateway(pipeline.env, pipeline.log_dir, "gateway-replica")
    try:
        yield [pipeline.url("gateway"), second.url]
    finally:
        second.stop()


async def _post(client: httpx.AsyncClient, base_url: str, body: bytes) -> httpx.Response:
    return await client.post(base_url + PATH, content=body, headers={
        "Content-Type": "application/json", "X-Hub-Signature-256": meta_payloads.sign(body, DEMO_TENANT.app_secret)})


async def _published(settings, wamid: str) -> list:
    """Events in the webhook topic about `wamid`: messages with that id, statuses of it."""
    events = await read_topic(settings.kafka_bootstrap_servers, settings.topic(WEBHOOK_INBOUND))
    found = []
    for event in events:
        if isinstance(event, InboundMessageReceived) and event.payload.message.wamid == wamid:
            found.append(event)
        elif isinstance(event, StatusReceived) and event.payload.wamid == wamid:
            found.append(event)
    return found


async def _stored(settings, wamid: str) -> list:
    """Waits until the topic shows the event (reads can lag the acknowledgement), then returns every copy."""
    return await eventually(lambda: _published(settings, wamid), lambda found: len(found) >= 1, timeout_s=20)


async def test_one_webhook_delivered_three_times_to_two_replicas_is_published_once(replicas, settings) -> None:
    wamid = meta_payloads.new_wamid()
    body = meta_payloads.encode(meta_payloads.text_message(DEMO_TENANT.phone_number_id,
                                                           f"dup {secrets.token_hex(4)}", wamid=wamid))
    async with httpx.AsyncClient(timeout=30) as client:
        answers = [await _post(client, url, body) for url in (replicas[0], replicas[1], replicas[0])]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [(a.json()["events"], a.json()["duplicates"]) for a in answers] == [(1, 0), (0, 1), (0, 1)]
    # 200 means acknowledged by Kafka: every copy there is was published before these answers.
    assert len(await _stored(settings, wamid)) == 1


async def test_concurrent_redeliveries_to_both_replicas_publish_once_and_lose_nothing(replicas, settings) -> None:
    sent = meta_payloads.new_wamid()
    status = {"id": sent, "status": "delivered", "timestamp": "1733011260", "recipient_id": "15551234567"}
    body = meta_payloads.encode(meta_payloads.envelope(DEMO_TENANT.phone_number_id, {"statuses": [status]}))
    async with httpx.AsyncClient(timeout=30) as client:
        answers = await asyncio.gather(*(_post(client, url, body) for url in (*replicas, *replicas)))
        assert {a.status_code for a in answers} <= {200, 503}
        # As Meta does: a 503 is retried until it is accepted.
        for answer, url in zip(answers, (*replicas, *replicas), strict=True):
            if answer.status_code == 503:
                await eventually(lambda url=url: _post(client, url, body), lambda r: r.status_code == 200)
    published = await _stored(settings, sent)
    assert len(published) == 1 and published[0].payload.status == "delivered"
