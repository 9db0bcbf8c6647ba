"""The gateway's HTTP contract, with FastStream's in-memory TestKafkaBroker."""

import json

import httpx
import pytest
from faststream.kafka import TestKafkaBroker

from pytake_contracts import InboundMessageReceived, decode_event
from pytake_contracts.topics import WEBHOOK_INBOUND
from pytake_devstack import meta_payloads
from pytake_gateway.app import create_app
from pytake_gateway.settings import GatewaySettings

SECRET = "unit-secret"
PATH = "/api/v1/webhooks/whatsapp"


@pytest.fixture
async def gateway():
    settings = GatewaySettings.model_validate({
        "GATEWAY_DEMO_APP_SECRET": SECRET, "GATEWAY_DEMO_VERIFY_TOKEN": "tok", "GATEWAY_MAX_BODY_BYTES": 4096,
        "PYTAKE_NAMESPACE": "unit"})
    app = create_app(settings)
    broker = app.state.broker
    received: list[str] = []

    @broker.subscriber(WEBHOOK_INBOUND.full_name("unit"))
    async def capture(body: dict) -> None:
        received.append(json.dumps(body))

    async with TestKafkaBroker(broker):
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                yield client, received


def _post(client: httpx.AsyncClient, body: bytes, signature: str | None, content_type: str = "application/json"):
    headers = {"Content-Type": content_type}
    if signature:
        headers["X-Hub-Signature-256"] = signature
    return client.post(PATH, content=body, headers=headers)


async def test_signed_message_is_published(gateway) -> None:
    client, received = gateway
    body = meta_payloads.encode(meta_payloads.text_message("100", "hello"))
    response = await _post(client, body, meta_payloads.sign(body, SECRET))
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "events": 1}
    (event,) = [decode_event(raw) for raw in received]
    assert isinstance(event, InboundMessageReceived)
    assert event.payload.message.text == "hello"


async def test_bad_signature_is_401_and_publishes_nothing(gateway) -> None:
    client, received = gateway
    body = meta_payloads.encode(meta_payloads.text_message("100", "hello"))
    response = await _post(client, body, meta_payloads.sign(body, "wrong"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
    assert received == []


async def test_malformed_json_is_400_and_publishes_nothing(gateway) -> None:
    client, received = gateway
    body = b'{"object": "whatsapp_business_account", "entry": [}'
    response = await _post(client, body, meta_payloads.sign(body, SECRET))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_payload"
    assert received == []


async def test_wrong_content_type_is_415(gateway) -> None:
    client, _ = gateway
    body = b"{}"
    assert (await _post(client, body, meta_payloads.sign(body, SECRET), "text/plain")).status_code == 415


async def test_body_over_limit_is_413(gateway) -> None:
    client, received = gateway
    body = meta_payloads.encode(meta_payloads.text_message("100", "x" * 5000))
    assert (await _post(client, body, meta_payloads.sign(body, SECRET))).status_code == 413
    assert received == []


async def test_verification_handshake(gateway) -> None:
    client, _ = gateway
    ok = await client.get(PATH, params={"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "42"})
    assert ok.status_code == 200 and ok.text == "42"
    assert ok.headers["content-type"].startswith("text/plain")
    wrong = await client.get(PATH, params={"hub.mode": "subscribe", "hub.verify_token": "no", "hub.challenge": "42"})
    assert wrong.status_code == 403
    missing = await client.get(PATH, params={"hub.mode": "subscribe"})
    assert missing.status_code == 400
