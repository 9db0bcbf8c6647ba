"""The ingest use case with fakes: what is stored in the intake topic, and when a webhook is refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import TracerProvider

from pytake_contracts import DeadLettered, WebhookReceived
from pytake_contracts.topics import DEAD_LETTERS, WEBHOOK_INTAKE
from pytake_devstack import meta_payloads
from pytake_devstack import meta_samples as meta
from pytake_gateway.adapters.kafka_sink import KafkaEventSink
from pytake_gateway.service.ingest import (
    AppCredentials,
    InvalidSignature,
    MalformedPayload,
    PublishStillPending,
    StoreUnavailable,
    UnknownApp,
    WebhookIngestor,
)
from gateway_fakes import RecordingSink

SECRET = "s3cret"
TRACE = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "pytake=1"}


class Secrets:
    async def credentials(self, meta_app_id: str | None) -> AppCredentials | None:
        return AppCredentials([SECRET], ["tok"]) if meta_app_id == "app1" else None


class HeldPublisher:
    """Kafka away while `held`: a publish waits until the test lets it end (`land` or `fail`)."""

    def __init__(self) -> None:
        self.calls = 0
        self.held = True
        self._outcome: asyncio.Future[None] | None = None

    async def publish_all(self, items: Sequence[tuple]) -> None:
        self.calls += 1
        if self.held:
            self._outcome = asyncio.get_running_loop().create_future()
            await self._outcome

    def land(self) -> None:
        assert self._outcome is not None
        self._outcome.set_result(None)

    def fail(self) -> None:
        assert self._outcome is not None
        self._outcome.set_exception(ConnectionError("gave up"))


def _one_number_body() -> bytes:
    return meta.encode(meta.webhook(meta.value(contacts=[meta.contact()], messages=[meta.messages()["text"]])))


async def _ingest(ingestor: WebhookIngestor, body: bytes, trace_context: dict[str, str] | None = None):
    return await ingestor.ingest("app1", body, meta_payloads.sign(body, SECRET), trace_context)


async def test_a_post_for_one_number_is_stored_byte_for_byte_as_signed() -> None:
    sink = RecordingSink()
    payload = meta.webhook(meta.value(contacts=[meta.contact(name="Jos\u00e9")], messages=[meta.messages()["text"]]))
    body = json.dumps(payload, indent=1, ensure_ascii=False).encode()  # spacing and UTF-8 as Meta chose
    outcome = await _ingest(WebhookIngestor(Secrets(), sink), body)
    (topic, event, key) = sink.published[0]
    assert len(sink.published) == 1 and topic is WEBHOOK_INTAKE and key == meta.PHONE_NUMBER_ID
    assert isinstance(event, WebhookReceived)
    assert event.payload.body.encode() == body
    assert (event.payload.phone_number_id, event.payload.meta_app_id) == (meta.PHONE_NUMBER_ID, "app1")
    assert outcome.stored == [event] and outcome.ignored == []


async def test_a_post_for_two_numbers_is_stored_once_per_number_with_its_own_changes() -> None:
    sink = RecordingSink()
    body = meta.encode(meta.webhook(meta.value(phone_number_id="111", messages=[meta.messages()["text"]]),
                                    meta.value(phone_number_id="222", statuses=[meta.status("w", "read")])))
    outcome = await _ingest(WebhookIngestor(Secrets(), sink), body)
    assert [key for _, _, key in sink.published] == ["111", "222"]
    assert [event.payload.phone_number_id for event in sink.events] == ["111", "222"]
    for event in sink.events:
        changes = [c for entry in json.loads(event.payload.body)["entry"] for c in entry["changes"]]
        assert [c["value"]["metadata"]["phone_number_id"] for c in changes] == [event.payload.phone_number_id]
    assert len({event.event_id for event in sink.events}) == 2 and outcome.stored == sink.events


async def test_a_redelivery_is_stored_again_dedup_is_the_forwarder_s_job() -> None:
    sink = RecordingSink()
    ingestor = WebhookIngestor(Secrets(), sink)
    body = _one_number_body()
    for _ in range(3):
        assert len((await _ingest(ingestor, body)).stored) == 1
    assert [event.payload.body for event in sink.events] == [body.decode()] * 3


async def test_an_unknown_object_stores_nothing_and_is_reported_ignored() -> None:
    sink = RecordingSink()
    sink.failing = True  # publishing would raise
    outcome = await _ingest(WebhookIngestor(Secrets(), sink), meta.encode({"object": "instagram", "entry": []}))
    assert outcome.stored == [] and outcome.ignored == ["object:instagram"]


async def test_an_unknown_field_is_ignored_and_the_messages_still_stored() -> None:
    sink = RecordingSink()
    text = meta.value(contacts=[meta.contact()], messages=[meta.messages()["text"]])
    body = meta.encode({"object": "whatsapp_business_account", "entry": [{"id": meta.WABA_ID, "changes": [
        {"field": "messages", "value": text}, {"field": "account_alerts", "value": {"x": 1}}]}]})
    outcome = await _ingest(WebhookIngestor(Secrets(), sink), body)
    assert outcome.ignored == ["field:account_alerts"]
    (event,) = sink.events
    assert "account_alerts" not in event.payload.body
    assert json.loads(event.payload.body)["entry"][0]["changes"] == [{"field": "messages", "value": text}]


async def test_the_given_trace_context_is_the_stored_event_s() -> None:
    sink = RecordingSink()
    await _ingest(WebhookIngestor(Secrets(), sink), _one_number_body(), TRACE)
    (event,) = sink.events
    assert (event.traceparent, event.tracestate) == (TRACE["traceparent"], TRACE["tracestate"])


async def test_without_a_trace_context_the_current_span_s_is_stored() -> None:
    sink = RecordingSink()
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("webhook") as span:
        await _ingest(WebhookIngestor(Secrets(), sink), _one_number_body())
    (event,) = sink.events
    context = span.get_span_context()
    assert event.traceparent == f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


async def test_kafka_failing_is_store_unavailable() -> None:
    sink = RecordingSink()
    sink.failing = True
    with pytest.raises(StoreUnavailable, match="kafka down"):
        await _ingest(WebhookIngestor(Secrets(), sink), _one_number_body())


async def test_unknown_app_bad_signature_and_malformed_body_are_refused_before_storing() -> None:
    sink = RecordingSink()
    ingestor = WebhookIngestor(Secrets(), sink)
    body = _one_number_body()
    with pytest.raises(UnknownApp):
        await ingestor.ingest("other", body, meta_payloads.sign(body, SECRET))
    with pytest.raises(InvalidSignature):
        await ingestor.ingest("app1", body, meta_payloads.sign(body, "wrong"))
    with pytest.raises(InvalidSignature):
        await ingestor.ingest("app1", body, None)
    for malformed in (b"[1, 2", b'{"entry": []}', b'{"object": "whatsapp_business_account", "entry": [{}]}'):
        with pytest.raises(MalformedPayload):
            await _ingest(ingestor, malformed)
    assert sink.published == []


def _settled_after_ingestor(refused: pytest.ExceptionInfo[StoreUnavailable]) -> asyncio.Event:
    """Set once the late publish has completed and the ingestor has heard of it (done callbacks run in
    the order they were added, and the ingestor added its own first)."""
    pending = refused.value.__cause__
    assert isinstance(pending, PublishStillPending)
    settled = asyncio.Event()
    pending.completion.add_done_callback(lambda _: settled.set())
    return settled


@pytest.mark.parametrize("landed", [True, False], ids=["acknowledged late", "failed late"])
async def test_a_publish_past_its_deadline_is_refused_and_settled_when_kafka_answers(landed: bool) -> None:
    publisher = HeldPublisher()
    ingestor = WebhookIngestor(Secrets(), KafkaEventSink(publisher, timeout_s=0.01))
    with pytest.raises(StoreUnavailable) as refused:
        await _ingest(ingestor, _one_number_body())
    assert ingestor.unsettled == 1
    settled = _settled_after_ingestor(refused)
    if landed:
        publisher.land()
    else:
        publisher.fail()
    await asyncio.wait_for(settled.wait(), timeout=30)
    assert ingestor.unsettled == 0


async def test_with_too_many_publishes_unsettled_new_webhooks_are_refused_without_publishing() -> None:
    publisher = HeldPublisher()
    ingestor = WebhookIngestor(Secrets(), KafkaEventSink(publisher, timeout_s=0.01), max_unsettled=1)
    with pytest.raises(StoreUnavailable) as refused:
        await _ingest(ingestor, _one_number_body())
    with pytest.raises(StoreUnavailable, match="still unacknowledged"):
        await _ingest(ingestor, _one_number_body())
    assert publisher.calls == 1
    settled = _settled_after_ingestor(refused)
    publisher.land()
    await asyncio.wait_for(settled.wait(), timeout=30)
    publisher.held = False  # Kafka is back: the next webhook is stored
    assert len((await _ingest(ingestor, _one_number_body())).stored) == 1
    assert publisher.calls == 2


class BoundSecrets:
    """An app with two numbers bound to it."""

    async def credentials(self, meta_app_id: str | None) -> AppCredentials | None:
        return AppCredentials([SECRET], ["tok"], phone_number_ids=frozenset({"111", "222"}))


async def test_parts_for_numbers_not_bound_to_the_app_are_answered_but_never_stored() -> None:
    sink = RecordingSink()
    body = meta.encode(meta.webhook(meta.value(phone_number_id="111", messages=[meta.messages()["text"]]),
                                    meta.value(phone_number_id="999", messages=[meta.messages()["text"]])))
    outcome = await _ingest(WebhookIngestor(BoundSecrets(), sink), body)
    # The signature was good, so Meta gets its 200; only the bound number's part goes on, and the
    # other is kept as a dead letter with its reason.
    assert [(topic, key) for topic, _, key in sink.published] == [(WEBHOOK_INTAKE, "111"), (DEAD_LETTERS, "999")]
    stored, refused = sink.events
    assert isinstance(stored, WebhookReceived) and stored.payload.phone_number_id == "111"
    assert isinstance(refused, DeadLettered) and refused.payload.error.startswith("number_not_bound_to_app")
    assert '"999"' in refused.payload.original and outcome.stored == [stored]
    assert outcome.ignored == ["number_not_bound_to_app:999"]


async def test_a_post_only_for_another_app_s_number_stores_nothing() -> None:
    sink = RecordingSink()
    body = meta.encode(meta.webhook(meta.value(phone_number_id="999", messages=[meta.messages()["text"]])))
    outcome = await _ingest(WebhookIngestor(BoundSecrets(), sink), body)
    assert [topic for topic, _, _ in sink.published] == [DEAD_LETTERS] and outcome.stored == []
    assert outcome.ignored == ["number_not_bound_to_app:999"]
