"""The gateway's HTTP contract, with an in-memory producer for Kafka."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import pytest

from pytake_contracts import WebhookReceived
from pytake_contracts.topics import WEBHOOK_INTAKE
from pytake_devstack import meta_payloads
from pytake_devstack import meta_samples as meta
from pytake_devstack.fake_records import FakeRecordProducer
from pytake_gateway.app import create_app, serving_app
from pytake_gateway.service.ingest import AppCredentials
from pytake_gateway.settings import GatewaySettings

SECRET = "unit-secret"
PATH = "/api/v1/webhooks/whatsapp"

BASE_SETTINGS = {
    "GATEWAY_SECRETS_SOURCE": "demo", "GATEWAY_DEMO_APP_SECRET": SECRET, "GATEWAY_DEMO_VERIFY_TOKEN": "tok",
    "GATEWAY_MAX_BODY_BYTES": 16384, "PYTAKE_NAMESPACE": "unit"}
FAST_PATH_OR_NOT = pytest.mark.parametrize("fast_path", [True, False], ids=["fast path", "fastapi routes"])


@dataclass
class Running:
    client: httpx.AsyncClient
    producer: FakeRecordProducer

    @property
    def stored(self) -> list[tuple[str, WebhookReceived]]:
        """(key, event) of each record published to the intake topic."""
        return [(key, event) for spec, event, key in self.producer.published  # type: ignore[misc]
                if spec is WEBHOOK_INTAKE]

    @property
    def events(self) -> list[WebhookReceived]:
        return [event for _, event in self.stored]


class OneApp:
    """The registry knows app1 only (and the demo path without an app id)."""

    async def credentials(self, meta_app_id: str | None) -> AppCredentials | None:
        return AppCredentials([SECRET], ["tok"]) if meta_app_id in {None, "app1"} else None


class HeldProducer(FakeRecordProducer):
    """Kafka away while `held`: a publish waits until the test lets it land."""

    def __init__(self) -> None:
        super().__init__()
        self.held = True
        self.waiting: list[asyncio.Future[None]] = []
        self.landing: list[asyncio.Task[None]] = []

    def publish_all(self, items: Sequence) -> asyncio.Future[None]:  # type: ignore[override]
        if not self.held:
            return super().publish_all(items)
        self.waiting.append(asyncio.get_running_loop().create_future())
        self.landing.append(asyncio.ensure_future(self._land_later(self.waiting[-1], list(items))))
        return self.landing[-1]

    async def _land_later(self, released: asyncio.Future[None], items: list) -> None:
        await released
        await super().publish_all(items)


async def _running(settings: dict, fast_path: bool = True, producer: FakeRecordProducer | None = None,
                   **app_parts):
    config = GatewaySettings.model_validate(settings)
    producer = producer or FakeRecordProducer()
    app = create_app(config, producer=producer, **app_parts)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=serving_app(app) if fast_path else app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            yield Running(client, producer)


# The server runs webhook POSTs on the fast path; FastAPI's documented routes must answer the same.
@pytest.fixture(params=[True, False], ids=["fast path", "fastapi routes"])
async def gateway(request):
    async for running in _running(BASE_SETTINGS, fast_path=request.param):
        yield running


def _post(client: httpx.AsyncClient, body: bytes, signature: str | None, content_type: str = "application/json",
          path: str = PATH):
    headers = {"Content-Type": content_type}
    if signature:
        headers["X-Hub-Signature-256"] = signature
    return client.post(path, content=body, headers=headers)


def _signed(client: httpx.AsyncClient, payload: dict | bytes, path: str = PATH):
    body = payload if isinstance(payload, bytes) else meta.encode(payload)
    return _post(client, body, meta_payloads.sign(body, SECRET), path=path)


def _text_webhook(phone_number_id: str = meta.PHONE_NUMBER_ID) -> dict:
    return meta.webhook(meta.value(phone_number_id=phone_number_id, contacts=[meta.contact()],
                                   messages=[meta.messages()["text"]]))


async def _metric(client: httpx.AsyncClient, line_start: str) -> float:
    text = (await client.get("/metrics")).text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)]
    return sum(values)


async def test_a_signed_webhook_is_stored_as_signed_in_the_intake_topic(gateway) -> None:
    body = meta_payloads.encode(meta_payloads.text_message("100", "hello"))
    response = await _post(gateway.client, body, meta_payloads.sign(body, SECRET))
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "stored": 1, "ignored": 0}
    ((key, event),) = gateway.stored
    assert key == "100" and isinstance(event, WebhookReceived)
    assert event.payload.body.encode() == body and event.payload.phone_number_id == "100"
    assert event.payload.meta_app_id is None  # the path without an app id


async def test_the_app_id_of_the_path_is_stored_with_the_webhook(gateway) -> None:
    response = await _signed(gateway.client, _text_webhook(), path=PATH + "/1234567890")
    assert response.status_code == 200
    (event,) = gateway.events
    assert event.payload.meta_app_id == "1234567890"


async def test_every_message_type_and_status_for_one_number_is_one_record(gateway) -> None:
    samples = meta.messages()
    out = meta.wamid()
    body = meta.encode(meta.entries(
        meta.webhook(meta.value(contacts=[meta.contact()], messages=list(samples.values()))),
        meta.webhook(meta.value(statuses=[meta.status(out, "delivered"),
                                          meta.status(out, "failed", errors=meta.FAILED_STATUS_ERRORS)]))))
    response = await _signed(gateway.client, body)
    assert response.json() == {"status": "accepted", "stored": 1, "ignored": 0}
    (event,) = gateway.events
    assert event.payload.body.encode() == body


async def test_a_webhook_for_two_numbers_is_two_records_keyed_by_number(gateway) -> None:
    payload = meta.webhook(meta.value(phone_number_id="111", contacts=[meta.contact()],
                                      messages=[meta.messages()["text"]]),
                           meta.value(phone_number_id="222", statuses=[meta.status(meta.wamid(), "read")]))
    response = await _signed(gateway.client, payload)
    assert response.json() == {"status": "accepted", "stored": 2, "ignored": 0}
    # Records of different keys go to Kafka side by side: no order between them is promised.
    assert sorted(key for key, _ in gateway.stored) == ["111", "222"]
    for key, event in gateway.stored:
        numbers = {change["value"]["metadata"]["phone_number_id"]
                   for entry in json.loads(event.payload.body)["entry"] for change in entry["changes"]}
        assert numbers == {key}
    assert await _metric(gateway.client, "pytake_gateway_webhooks_stored_total") == 2


async def test_the_same_webhook_three_times_is_stored_three_times(gateway) -> None:
    body = meta.encode(_text_webhook())
    answers = [await _signed(gateway.client, body) for _ in range(3)]
    assert [(a.status_code, a.json()["stored"]) for a in answers] == [(200, 1)] * 3
    assert [event.payload.body.encode() for event in gateway.events] == [body] * 3
    assert len({event.event_id for event in gateway.events}) == 3


async def test_unknown_object_or_field_is_200_ignored_and_counted(gateway) -> None:
    other_object = await _signed(gateway.client, {"object": "instagram", "entry": []})
    other_field = await _signed(gateway.client, meta.webhook({"ban_info": {}}, field="account_update"))
    assert (other_object.status_code, other_field.status_code) == (200, 200)
    assert other_object.json() == other_field.json() == {"status": "accepted", "stored": 0, "ignored": 1}
    assert gateway.stored == []
    assert await _metric(gateway.client, 'pytake_gateway_ignored_total{reason="object"}') == 1
    assert await _metric(gateway.client, 'pytake_gateway_ignored_total{reason="field"}') == 1


async def test_an_unknown_field_beside_messages_is_left_out_of_the_record(gateway) -> None:
    messages = meta.value(contacts=[meta.contact()], messages=[meta.messages()["text"]])
    payload = {"object": "whatsapp_business_account", "entry": [{"id": meta.WABA_ID, "changes": [
        {"field": "account_update", "value": {"ban_info": {}}}, {"field": "messages", "value": messages}]}]}
    response = await _signed(gateway.client, payload)
    assert response.json() == {"status": "accepted", "stored": 1, "ignored": 1}
    (event,) = gateway.events
    assert [c["field"] for c in json.loads(event.payload.body)["entry"][0]["changes"]] == ["messages"]


async def test_bad_or_missing_signature_is_401_and_stores_nothing(gateway) -> None:
    body = meta_payloads.encode(meta_payloads.text_message("100", "hello"))
    for signature in (meta_payloads.sign(body, "wrong"), None):
        response = await _post(gateway.client, body, signature)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_signature"
    assert gateway.stored == []


@pytest.mark.parametrize("body", [b'{"object": "whatsapp_business_account", "entry": [}', b'{"entry": []}'],
                         ids=["not json", "not a webhook"])
async def test_malformed_body_is_400_and_stores_nothing(gateway, body: bytes) -> None:
    response = await _post(gateway.client, body, meta_payloads.sign(body, SECRET))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_payload"
    assert gateway.stored == []


async def test_wrong_or_missing_content_type_is_415(gateway) -> None:
    body = meta.encode(_text_webhook())
    for content_type in ("text/plain", ""):
        response = await _post(gateway.client, body, meta_payloads.sign(body, SECRET), content_type)
        assert response.status_code == 415
        assert response.json()["error"]["code"] == "unsupported_media_type"
    charset = await _post(gateway.client, body, meta_payloads.sign(body, SECRET), "application/json; charset=utf-8")
    assert charset.status_code == 200
    assert len(gateway.stored) == 1


async def test_body_over_limit_is_413_whether_declared_or_streamed(gateway) -> None:
    body = meta_payloads.encode(meta_payloads.text_message("100", "x" * 20000))
    declared = await _post(gateway.client, body, meta_payloads.sign(body, SECRET))
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"

    async def chunks():  # no Content-Length: the limit is found while reading
        for start in range(0, len(body), 4096):
            yield body[start:start + 4096]

    streamed = await gateway.client.post(PATH, content=chunks(), headers={
        "Content-Type": "application/json", "X-Hub-Signature-256": meta_payloads.sign(body, SECRET)})
    assert streamed.status_code == 413
    assert gateway.stored == []


async def test_verification_handshake(gateway) -> None:
    for path in (PATH, PATH + "/1234567890"):
        ok = await gateway.client.get(path, params={"hub.mode": "subscribe", "hub.verify_token": "tok",
                                                    "hub.challenge": "42"})
        assert ok.status_code == 200 and ok.text == "42"
        assert ok.headers["content-type"].startswith("text/plain")
        wrong = await gateway.client.get(path, params={"hub.mode": "subscribe", "hub.verify_token": "no",
                                                       "hub.challenge": "42"})
        assert wrong.status_code == 403
        not_subscribe = await gateway.client.get(path, params={"hub.mode": "unsubscribe", "hub.verify_token": "tok",
                                                               "hub.challenge": "42"})
        assert not_subscribe.status_code == 403
        missing = await gateway.client.get(path, params={"hub.mode": "subscribe"})
        assert missing.status_code == 400


@FAST_PATH_OR_NOT
async def test_an_unknown_app_is_404_and_stores_nothing(fast_path: bool) -> None:
    async for running in _running(BASE_SETTINGS, fast_path, secrets=OneApp()):
        known = await _signed(running.client, _text_webhook(), path=PATH + "/app1")
        unknown = await _signed(running.client, _text_webhook(), path=PATH + "/app2")
        assert known.status_code == 200
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_app"
        handshake = await running.client.get(PATH + "/app2", params={
            "hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "1"})
        assert handshake.status_code == 404
        assert [event.payload.meta_app_id for event in running.events] == ["app1"]


@FAST_PATH_OR_NOT
async def test_kafka_failing_is_503_unavailable(fast_path: bool) -> None:
    failing = FakeRecordProducer()
    failing.failure = ConnectionError("kafka down")
    async for running in _running(BASE_SETTINGS, fast_path, producer=failing):
        response = await _signed(running.client, _text_webhook())
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "unavailable"
        assert await _metric(running.client, 'pytake_gateway_webhooks_total{status="503"}') == 1
        assert await _metric(running.client, "pytake_gateway_webhooks_stored_total") == 0


@FAST_PATH_OR_NOT
async def test_a_publish_past_its_deadline_is_503_and_later_webhooks_get_through(fast_path: bool) -> None:
    publisher = HeldProducer()
    async for running in _running({**BASE_SETTINGS, "GATEWAY_PUBLISH_TIMEOUT_S": 0.01}, fast_path,
                                  producer=publisher):
        late = await _signed(running.client, _text_webhook("111"))
        assert late.status_code == 503 and late.json()["error"]["code"] == "unavailable"
        publisher.held = False
        publisher.waiting[0].set_result(None)  # the late publish lands after all
        await publisher.landing[0]
        on_time = await _signed(running.client, _text_webhook("222"))
        assert on_time.status_code == 200 and on_time.json()["stored"] == 1
        assert sorted(event.payload.phone_number_id for event in running.events) == ["111", "222"]


@FAST_PATH_OR_NOT
async def test_per_source_rate_limit_answers_429(fast_path: bool) -> None:
    async for running in _running({**BASE_SETTINGS, "GATEWAY_RATE_LIMIT_PER_S": 0.001,
                                   "GATEWAY_RATE_LIMIT_BURST": 2}, fast_path):
        answers = [await _signed(running.client, _text_webhook()) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert answers[2].json()["error"]["code"] == "rate_limited"
        assert len(running.stored) == 2
        assert await _metric(running.client, "pytake_gateway_rate_limited_total") == 1


async def test_health_docs_and_metrics_are_served(gateway) -> None:
    client = gateway.client
    assert (await client.get("/api/v1/health")).json()["status"] == "ok"
    assert (await client.get("/api/v1/docs")).status_code == 200
    paths = (await client.get("/api/v1/openapi.json")).json()["paths"]
    assert PATH in paths and PATH + "/{meta_app_id}" in paths
    documented = paths[PATH + "/{meta_app_id}"]["post"]
    assert {p["name"] for p in documented["parameters"]} >= {"meta_app_id", "X-Hub-Signature-256"}
    assert {"200", "401", "413", "415", "503"} <= set(documented["responses"])
    await _signed(client, _text_webhook())
    assert await _metric(client, 'pytake_gateway_webhooks_total{status="200"}') == 1
    assert await _metric(client, "pytake_gateway_ack_seconds_count") == 1
    assert await _metric(client, "pytake_gateway_webhooks_stored_total") == 1


async def test_a_path_that_is_no_webhook_path_gets_fastapi_s_answer(gateway) -> None:
    body = meta.encode(_text_webhook())
    for path in (PATH + "/app/extra", PATH + "/bad%20id"):
        answer = await _post(gateway.client, body, meta_payloads.sign(body, SECRET), path=path)
        assert answer.status_code in {404, 422} and answer.json()["error"]["code"] in {"not_found", "validation_error"}
    assert gateway.stored == []
