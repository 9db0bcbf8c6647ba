"""The gateway's HTTP contract, with FastStream's in-memory TestKafkaBroker."""

import json
import time

import httpx
import pytest
from faststream.kafka import TestKafkaBroker

from pytake_contracts import InboundMessageReceived, StatusReceived, decode_event
from pytake_contracts.topics import WEBHOOK_INBOUND
from pytake_devstack import meta_payloads
from pytake_devstack import meta_samples as meta
from pytake_gateway.adapters.memory_dedup import InMemoryDedupStore
from pytake_gateway.app import create_app, serving_app
from pytake_gateway.settings import GatewaySettings
from pytake_plumbing.messaging import EventPublisher, make_broker

SECRET = "unit-secret"
PATH = "/api/v1/webhooks/whatsapp"

BASE_SETTINGS = {
    "GATEWAY_SECRETS_SOURCE": "demo", "GATEWAY_DEMO_APP_SECRET": SECRET, "GATEWAY_DEMO_VERIFY_TOKEN": "tok",
    "GATEWAY_MAX_BODY_BYTES": 16384, "PYTAKE_NAMESPACE": "unit"}


async def _running(settings: dict, fast_path: bool = True):
    config = GatewaySettings.model_validate(settings)
    broker = make_broker(config, "gateway")
    app = create_app(config, dedup=InMemoryDedupStore(time.monotonic), broker=broker,
                     publisher=EventPublisher(broker, config))
    received: list[str] = []

    @broker.subscriber(WEBHOOK_INBOUND.full_name("unit"))
    async def capture(body: dict) -> None:
        received.append(json.dumps(body))

    async with TestKafkaBroker(broker):
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=serving_app(app) if fast_path else app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
                yield client, received


# The server runs webhook POSTs on the fast path; FastAPI's documented routes must answer the same.
@pytest.fixture(params=["fast path", "fastapi routes"])
async def gateway(request):
    async for running in _running(BASE_SETTINGS, fast_path=request.param == "fast path"):
        yield running


def _post(client: httpx.AsyncClient, body: bytes, signature: str | None, content_type: str = "application/json",
          path: str = PATH):
    headers = {"Content-Type": content_type}
    if signature:
        headers["X-Hub-Signature-256"] = signature
    return client.post(path, content=body, headers=headers)


def _signed(client: httpx.AsyncClient, payload: dict, path: str = PATH):
    body = meta.encode(payload)
    return _post(client, body, meta_payloads.sign(body, SECRET), path=path)


async def _metric(client: httpx.AsyncClient, line_start: str) -> float:
    text = (await client.get("/metrics")).text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)]
    return sum(values)


async def test_signed_message_is_published(gateway) -> None:
    client, received = gateway
    body = meta_payloads.encode(meta_payloads.text_message("100", "hello"))
    response = await _post(client, body, meta_payloads.sign(body, SECRET))
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "events": 1, "duplicates": 0}
    (event,) = [decode_event(raw) for raw in received]
    assert isinstance(event, InboundMessageReceived)
    assert event.payload.message.text == "hello"


async def test_every_message_type_and_status_in_one_post_is_published(gateway) -> None:
    client, received = gateway
    samples = meta.messages()
    out = meta.wamid()
    payload = meta.entries(
        meta.webhook(meta.value(contacts=[meta.contact()], messages=list(samples.values()))),
        meta.webhook(meta.value(statuses=[meta.status(out, "delivered"),
                                          meta.status(out, "failed", errors=meta.FAILED_STATUS_ERRORS)])))
    response = await _signed(client, payload)
    assert response.status_code == 200 and response.json()["events"] == len(samples) + 2
    events = [decode_event(raw) for raw in received]
    assert sorted(e.payload.message.type for e in events if isinstance(e, InboundMessageReceived)) == sorted(
        sample["type"] for sample in samples.values())
    assert [e.payload.status for e in events if isinstance(e, StatusReceived)] == ["delivered", "failed"]


async def test_the_same_webhook_three_times_is_published_once(gateway) -> None:
    client, received = gateway
    out = meta.wamid()
    payload = meta.webhook(meta.value(contacts=[meta.contact()], messages=[meta.messages()["text"]],
                                      statuses=[meta.status(out, "sent")]))
    answers = [await _signed(client, payload) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert [a.json()["events"] for a in answers] == [2, 0, 0]
    assert [a.json()["duplicates"] for a in answers] == [0, 2, 2]
    assert len(received) == 2
    assert await _metric(client, "pytake_gateway_duplicates_total") == 4
    # A new status of the same message is not a duplicate: statuses are keyed by (wamid, status).
    later = await _signed(client, meta.webhook(meta.value(statuses=[meta.status(out, "delivered")])))
    assert later.json()["events"] == 1 and len(received) == 3


async def test_business_scoped_user_without_phone_number(gateway) -> None:
    client, received = gateway
    body = meta_payloads.encode(meta_payloads.text_message("100", "hi", wa_id=None, user_id="US.1234"))
    assert (await _post(client, body, meta_payloads.sign(body, SECRET))).status_code == 200
    (event,) = [decode_event(raw) for raw in received]
    assert event.payload.contact.wa_id is None and event.payload.contact.user_id == "US.1234"


async def test_unknown_object_or_field_is_200_ignored_and_counted(gateway) -> None:
    client, received = gateway
    other_object = await _signed(client, {"object": "instagram", "entry": []})
    other_field = await _signed(client, meta.webhook({"ban_info": {}}, field="account_update"))
    assert (other_object.status_code, other_field.status_code) == (200, 200)
    assert other_object.json()["events"] == other_field.json()["events"] == 0
    assert received == []
    assert await _metric(client, 'pytake_gateway_ignored_total{reason="object"}') == 1
    assert await _metric(client, 'pytake_gateway_ignored_total{reason="field"}') == 1


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
    body = meta_payloads.encode(meta_payloads.text_message("100", "x" * 20000))
    assert (await _post(client, body, meta_payloads.sign(body, SECRET))).status_code == 413
    assert received == []


async def test_verification_handshake(gateway) -> None:
    client, _ = gateway
    for path in (PATH, PATH + "/1234567890"):
        ok = await client.get(path, params={"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "42"})
        assert ok.status_code == 200 and ok.text == "42"
        assert ok.headers["content-type"].startswith("text/plain")
        wrong = await client.get(path, params={"hub.mode": "subscribe", "hub.verify_token": "no",
                                               "hub.challenge": "42"})
        assert wrong.status_code == 403
        missing = await client.get(path, params={"hub.mode": "subscribe"})
        assert missing.status_code == 400


async def test_per_source_rate_limit_answers_429() -> None:
    async for client, received in _running({**BASE_SETTINGS, "GATEWAY_RATE_LIMIT_PER_S": 0.001,
                                            "GATEWAY_RATE_LIMIT_BURST": 2}):
        payload = meta.webhook(meta.value(contacts=[meta.contact()], messages=[meta.messages()["text"]]))
        answers = [(await _signed(client, payload)).status_code for _ in range(3)]
        assert answers == [200, 200, 429]
        assert len(received) == 1
        assert await _metric(client, "pytake_gateway_rate_limited_total") == 1


async def test_health_docs_and_metrics_are_served(gateway) -> None:
    client, _ = gateway
    assert (await client.get("/api/v1/health")).json()["status"] == "ok"
    assert (await client.get("/api/v1/docs")).status_code == 200
    paths = (await client.get("/api/v1/openapi.json")).json()["paths"]
    assert PATH in paths and PATH + "/{meta_app_id}" in paths
    documented = paths[PATH + "/{meta_app_id}"]["post"]
    assert {p["name"] for p in documented["parameters"]} >= {"meta_app_id", "X-Hub-Signature-256"}
    assert {"200", "401", "413", "415", "503"} <= set(documented["responses"])
    await _signed(client, meta.webhook(meta.value(contacts=[meta.contact()], messages=[meta.messages()["text"]])))
    assert await _metric(client, 'pytake_gateway_webhooks_total{status="200"}') == 1
    assert await _metric(client, "pytake_gateway_ack_seconds_count") == 1
    assert await _metric(client, 'pytake_gateway_events_published_total{event_type="webhook.message_received"}') == 1


async def test_a_path_that_is_no_webhook_path_gets_fastapi_s_answer(gateway) -> None:
    client, received = gateway
    body = meta.encode(meta.webhook(meta.value(contacts=[meta.contact()], messages=[meta.messages()["text"]])))
    for path in (PATH + "/app/extra", PATH + "/bad%20id"):
        answer = await _post(client, body, meta_payloads.sign(body, SECRET), path=path)
        assert answer.status_code in {404, 422} and answer.json()["error"]["code"] in {"not_found", "validation_error"}
    assert received == []
