"""Rejected webhooks never reach Kafka; accepted ones are in the intake topic when the gateway answers,
and the forwarder passes each message on to the inbound topic; a poison stored webhook is dead-lettered."""

from __future__ import annotations

import secrets

import httpx
import pytest

from pytake_contracts import (
    DeadLettered,
    Event,
    InboundMessageReceived,
    StatusReceived,
    WebhookReceived,
    WebhookReceivedPayload,
    decode_event,
    encode_event,
)
from pytake_contracts.topics import DEAD_LETTERS, WEBHOOK_INBOUND, WEBHOOK_INTAKE
from pytake_devstack import meta_payloads
from pytake_devstack.demo_tenant import DEMO_TENANT
from pytake_devstack.kafka_io import Writer, read_topics
from pytake_plumbing.settings import CommonSettings

from .waiting import eventually

pytestmark = pytest.mark.integration

WEBHOOK_PATH = "/api/v1/webhooks/whatsapp"


async def read_topic(bootstrap: str, topic: str) -> list:
    """Every record now in the topic, partition by partition: read up to the end offsets taken first."""
    records = sorted(await read_topics(bootstrap, [topic]), key=lambda r: (r.partition, r.offset))
    return [decode_event(r.value) for r in records]


async def post_signed(client: httpx.AsyncClient, base_url: str, body: bytes,
                      secret: str = DEMO_TENANT.app_secret) -> httpx.Response:
    return await client.post(base_url + WEBHOOK_PATH, content=body, headers={
        "Content-Type": "application/json", "X-Hub-Signature-256": meta_payloads.sign(body, secret)})


def new_phone_number_id() -> str:
    """A business number no tenant has: its events stop at the router (unroutable), touching no conversation."""
    return "3" + "".join(secrets.choice("0123456789") for _ in range(14))


def about(events: list[Event], wamid: str) -> list[Event]:
    """The message with id `wamid` and the statuses of it."""
    return [event for event in events
            if (isinstance(event, InboundMessageReceived) and event.payload.message.wamid == wamid)
            or (isinstance(event, StatusReceived) and event.payload.wamid == wamid)]


async def inbound(settings: CommonSettings) -> list[Event]:
    return await read_topic(settings.kafka_bootstrap_servers, settings.topic(WEBHOOK_INBOUND))


async def forwarded(settings: CommonSettings, wamid: str, timeout_s: float = 60.0) -> list[Event]:
    """Waits until the forwarder passed on something about `wamid` (it works after the 200), returns it all."""
    async def found() -> list[Event]:
        return about(await inbound(settings), wamid)
    return await eventually(found, lambda events: len(events) >= 1, timeout_s=timeout_s, interval_s=0.3)


async def forward_everything_before(client: httpx.AsyncClient, settings: CommonSettings, gateway_url: str,
                                    *phone_number_ids: str, secret: str = DEMO_TENANT.app_secret) -> None:
    """Posts a marker message for each number and waits until every marker is forwarded.

    The intake topic is keyed by business number, and a partition is forwarded in order: once
    a number's marker is downstream, every webhook of that number stored before it has been
    handled, so a second copy of any of them would already be there too.
    """
    markers = {number: meta_payloads.new_wamid() for number in phone_number_ids}
    for number, wamid in markers.items():
        body = meta_payloads.encode(meta_payloads.text_message(number, "marker", wamid=wamid))
        answer = await post_signed(client, gateway_url, body, secret)
        assert answer.status_code == 200, answer.text

    async def missing() -> set[str]:
        seen = {e.payload.message.wamid for e in await inbound(settings) if isinstance(e, InboundMessageReceived)}
        return set(markers.values()) - seen

    await eventually(missing, lambda wamids: not wamids, timeout_s=90, interval_s=0.3)


async def test_only_the_valid_webhook_is_stored_and_forwarded(pipeline, settings) -> None:
    marker = secrets.token_hex(6)
    url = pipeline.url("gateway")
    good = meta_payloads.encode(meta_payloads.text_message(DEMO_TENANT.phone_number_id, f"good {marker}"))
    forged = meta_payloads.encode(meta_payloads.text_message(DEMO_TENANT.phone_number_id, f"forged {marker}"))
    broken = f'{{"object":"whatsapp_business_account","entry":[{{"text":"broken {marker}"'.encode()
    async with httpx.AsyncClient(timeout=30) as client:
        bad_sig = await post_signed(client, url, forged, "not-the-secret")
        malformed = await post_signed(client, url, broken)
        accepted = await post_signed(client, url, good)
    assert bad_sig.status_code == 401
    assert malformed.status_code == 400
    assert accepted.status_code == 200
    assert accepted.json() == {"status": "accepted", "stored": 1, "ignored": 0}

    # 200 means Kafka acknowledged: the stored webhook is in the intake topic now, signed bytes unchanged.
    intake = await read_topic(settings.kafka_bootstrap_servers, settings.topic(WEBHOOK_INTAKE))
    stored = [e for e in intake if isinstance(e, WebhookReceived) and marker in e.payload.body]
    assert [e.payload.body for e in stored] == [good.decode()]
    assert stored[0].payload.phone_number_id == DEMO_TENANT.phone_number_id

    async def mine() -> list[InboundMessageReceived]:
        return [e for e in await inbound(settings)
                if isinstance(e, InboundMessageReceived) and marker in (e.payload.message.text or "")]

    # Forwarding follows the 200. All three share a partition key, so once the accepted one is
    # readable the rejected ones, posted before it, would be too.
    (message,) = await eventually(mine, lambda events: len(events) >= 1, timeout_s=60, interval_s=0.3)
    assert message.payload.message.text == f"good {marker}"
    assert message.causation_id == str(stored[0].event_id)


async def test_one_post_for_two_numbers_is_stored_per_number_and_unsupported_parts_ignored(pipeline,
                                                                                          settings) -> None:
    first, second = new_phone_number_id(), new_phone_number_id()
    first_wamid, second_wamid = meta_payloads.new_wamid(), meta_payloads.new_wamid()
    payload = meta_payloads.text_message(first, "to the first number", wamid=first_wamid)
    other = meta_payloads.text_message(second, "to the second number", wamid=second_wamid)
    payload["entry"] += other["entry"]
    payload["entry"][0]["changes"].append({"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}})
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await post_signed(client, pipeline.url("gateway"), meta_payloads.encode(payload))
    assert answer.status_code == 200
    assert answer.json() == {"status": "accepted", "stored": 2, "ignored": 1}

    intake = await read_topic(settings.kafka_bootstrap_servers, settings.topic(WEBHOOK_INTAKE))
    by_number = {e.payload.phone_number_id: e.payload.body for e in intake
                 if isinstance(e, WebhookReceived) and e.payload.phone_number_id in {first, second}}
    assert first_wamid in by_number[first] and second_wamid not in by_number[first]
    assert second_wamid in by_number[second] and first_wamid not in by_number[second]
    assert "account_update" not in by_number[first]

    (to_first,) = await forwarded(settings, first_wamid)
    (to_second,) = await forwarded(settings, second_wamid)
    assert to_first.payload.phone_number_id == first
    assert to_second.payload.phone_number_id == second


async def test_an_unreadable_stored_webhook_is_dead_lettered_and_forwarding_carries_on(pipeline, settings) -> None:
    marker = secrets.token_hex(6)
    phone_number_id = new_phone_number_id()
    poison = WebhookReceived(correlation_id=f"poison-{marker}", producer="gateway",
                             payload=WebhookReceivedPayload(phone_number_id=phone_number_id,
                                                            body=f"not a webhook {marker}"))
    async with Writer(settings.kafka_bootstrap_servers) as producer:
        await producer.send(settings.topic(WEBHOOK_INTAKE), encode_event(poison), key=phone_number_id.encode())

    async def letters() -> list[DeadLettered]:
        events = await read_topic(settings.kafka_bootstrap_servers, settings.topic(DEAD_LETTERS))
        return [e for e in events if isinstance(e, DeadLettered) and marker in e.payload.original]

    (letter,) = await eventually(letters, lambda found: len(found) >= 1, timeout_s=60, interval_s=0.3)
    assert letter.payload.consumer == "gateway-forwarder"
    assert letter.payload.origin_topic == settings.topic(WEBHOOK_INTAKE)
    assert letter.payload.key == phone_number_id
    assert "UnreadableWebhook" in letter.payload.error and "not a webhook payload" in letter.payload.error

    # The same number, so the same intake partition: the forwarder went past the poison.
    wamid = meta_payloads.new_wamid()
    body = meta_payloads.encode(meta_payloads.text_message(phone_number_id, f"after the poison {marker}", wamid=wamid))
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await post_signed(client, pipeline.url("gateway"), body)).status_code == 200
    (message,) = await forwarded(settings, wamid)
    assert message.payload.message.text == f"after the poison {marker}"
    assert len(await letters()) == 1


async def test_a_webhook_at_the_body_limit_is_stored_and_every_message_in_it_forwarded(pipeline, settings) -> None:
    """Escaped into its stored record, a body of quotes nearly doubles: the intake topic takes it all the same."""
    number, text = new_phone_number_id(), '"quoted" \\ ' * 300

    def message() -> dict:
        return {"from": "15550001111", "id": meta_payloads.new_wamid(), "timestamp": "1700000000",
                "type": "text", "text": {"body": text}}

    empty = len(meta_payloads.encode(meta_payloads.envelope(number, {"messages": []})))
    each = len(meta_payloads.encode(message())) + 1
    limit = 1024 * 1024  # the gateway's default GATEWAY_MAX_BODY_BYTES
    messages = [message() for _ in range((limit - empty) // each)]
    body = meta_payloads.encode(meta_payloads.envelope(number, {"messages": messages}))
    assert limit - each < len(body) <= limit
    async with httpx.AsyncClient(timeout=60) as client:
        accepted = await post_signed(client, pipeline.url("gateway"), body)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["stored"] == 1
        await forward_everything_before(client, settings, pipeline.url("gateway"), number)
    events = await inbound(settings)
    wamids = {m["id"] for m in messages}
    assert sum(isinstance(e, InboundMessageReceived) and e.payload.message.wamid in wamids for e in events) \
        == len(messages) > 100
