"""The forwarder process's wiring: intake records in (an in-memory record source), events and dead letters
out (an in-memory producer)."""

from __future__ import annotations

import json

import httpx

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
from pytake_devstack import meta_samples as meta
from pytake_devstack.fake_records import FakeRecordProducer, FakeRecordSource
from pytake_gateway.adapters.memory_receipts import InMemoryReceiptStore
from pytake_gateway.app import create_forwarder_app
from pytake_gateway.settings import GatewaySettings


class Publisher(FakeRecordProducer):
    @property
    def events(self) -> list[Event]:
        """What was forwarded downstream (dead letters apart)."""
        return [event for spec, event, _ in self.published if spec is not DEAD_LETTERS]


def _stored(payload: dict | str) -> WebhookReceived:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return WebhookReceived(correlation_id="c", producer="gateway",
                           payload=WebhookReceivedPayload(phone_number_id=meta.PHONE_NUMBER_ID, body=body))


def _text(wamid: str) -> dict:
    return meta.webhook(meta.value(contacts=[meta.contact()], messages=[
        {"from": meta.WA_ID, "id": wamid, "timestamp": "1700000000", "type": "text", "text": {"body": wamid}}]))


async def _metric(client: httpx.AsyncClient, line_start: str) -> float:
    text = (await client.get("/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


async def _forwarder(publisher: Publisher):
    settings = GatewaySettings.model_validate({"PYTAKE_NAMESPACE": "unitfwd"})
    source = FakeRecordSource()
    app = create_forwarder_app(settings, receipts=InMemoryReceiptStore(), producer=publisher, source=source)

    async def send(*webhooks: WebhookReceived) -> None:
        source.put(settings.topic(WEBHOOK_INTAKE), *(encode_event(w) for w in webhooks))
        await source.all_committed()

    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fw") as client:
            yield send, client


async def test_batches_from_the_intake_topic_are_forwarded_once_and_counted() -> None:
    publisher = Publisher()
    async for send, client in _forwarder(publisher):
        sent = meta.wamid()
        statuses = _stored(meta.webhook(meta.value(statuses=[meta.status(sent, "delivered")])))
        await send(_stored(_text("w1")), _stored(_text("w1")), statuses)
        await send(_stored(_text("w1")), _stored(_text("w2")), statuses)
        assert [type(e) for e in publisher.events] == [InboundMessageReceived, StatusReceived,
                                                       InboundMessageReceived]
        assert [topic.name for topic, _, _ in publisher.published] == [WEBHOOK_INBOUND.name] * 3
        assert await _metric(client, 'pytake_gateway_events_forwarded_total{event_type="webhook.message_received"}'
                             ) == 2
        assert await _metric(client, 'pytake_gateway_events_forwarded_total{event_type="webhook.status_received"}'
                             ) == 1
        assert await _metric(client, 'pytake_gateway_duplicates_total{kind="message"}') == 2
        assert await _metric(client, 'pytake_gateway_duplicates_total{kind="status"}') == 1
        assert publisher.of(DEAD_LETTERS) == []
        assert (await client.get("/api/v1/health")).json()["status"] == "ok"


async def test_an_unreadable_stored_webhook_is_dead_lettered_and_the_rest_of_its_batch_forwarded() -> None:
    publisher = Publisher()
    async for send, client in _forwarder(publisher):
        poison = _stored('{"not": "a webhook"}')
        await send(_stored(_text("w1")), poison, _stored(_text("w2")))
        assert [e.payload.message.wamid for e in publisher.events] == ["w1", "w2"]
        (letter,) = publisher.of(DEAD_LETTERS)
        assert isinstance(letter, DeadLettered)
        assert letter.payload.consumer == "gateway-forwarder"
        assert letter.payload.origin_topic.endswith(WEBHOOK_INTAKE.name)
        assert letter.payload.error.startswith("UnreadableWebhook") and letter.payload.attempts == 1
        assert decode_event(letter.payload.original).event_id == poison.event_id
        assert await _metric(client, "pytake_gateway_events_forwarded_total") == 2


async def test_parts_of_stored_webhooks_the_split_cannot_use_are_counted_as_ignored() -> None:
    publisher = Publisher()
    async for send, client in _forwarder(publisher):
        nobody = {"id": "w0", "timestamp": "1", "type": "text", "text": {"body": "?"}}  # no sender at all
        await send(_stored(meta.webhook(meta.value(messages=[nobody]))))
        assert publisher.events == []
        assert await _metric(client, 'pytake_gateway_forwarder_ignored_total{reason="message"}') == 1
