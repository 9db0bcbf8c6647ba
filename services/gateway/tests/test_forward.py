"""The forwarder's use case with an in-memory receipt store: each message and status passed on once."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from pytake_contracts import (
    InboundMessageReceived,
    StatusReceived,
    WebhookErrorReceived,
    WebhookReceived,
    WebhookReceivedPayload,
)
from pytake_contracts.topics import WEBHOOK_INBOUND
from pytake_devstack import meta_samples as meta
from pytake_gateway.adapters.memory_receipts import InMemoryReceiptStore
from pytake_gateway.service.forward import UnreadableWebhook, forward_webhooks
from pytake_plumbing.messaging import PermanentError
from gateway_fakes import RecordingSink

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ERROR = {"code": 131000, "title": "Something went wrong", "message": "Something went wrong"}


def _stored(payload: dict | str, *, traceparent: str | None = None, tracestate: str | None = None
            ) -> WebhookReceived:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    return WebhookReceived(correlation_id="c", producer="gateway", traceparent=traceparent, tracestate=tracestate,
                           payload=WebhookReceivedPayload(phone_number_id=meta.PHONE_NUMBER_ID, body=body))


def _text(wamid: str) -> dict:
    return {"from": meta.WA_ID, "id": wamid, "timestamp": "1700000000", "type": "text", "text": {"body": wamid}}


def _messages(*wamids: str) -> dict:
    return meta.webhook(meta.value(contacts=[meta.contact()], messages=[_text(w) for w in wamids]))


def _statuses(*pairs: tuple[str, str]) -> dict:
    return meta.webhook(meta.value(statuses=[meta.status(wamid, state) for wamid, state in pairs]))


def _wamids(events: Sequence) -> list[str]:
    return [e.payload.message.wamid if isinstance(e, InboundMessageReceived) else e.payload.wamid for e in events]


async def test_every_message_status_and_error_becomes_one_event_on_the_inbound_topic() -> None:
    sink = RecordingSink()
    stored = _stored(meta.webhook(meta.value(contacts=[meta.contact()], messages=[_text("m1"), _text("m2")],
                                             statuses=[meta.status("o1", "sent"), meta.status("o2", "read")],
                                             errors=[ERROR])))
    outcome = await forward_webhooks([stored], InMemoryReceiptStore(), sink)
    assert [type(e) for e in sink.events] == [InboundMessageReceived, InboundMessageReceived, StatusReceived,
                                               StatusReceived, WebhookErrorReceived]
    assert [topic.name for topic, _, _ in sink.published] == [WEBHOOK_INBOUND.name] * 5
    assert [key for _, _, key in sink.published] == [f"{meta.PHONE_NUMBER_ID}:p:{meta.WA_ID}"] * 4 + [
        meta.PHONE_NUMBER_ID]
    assert outcome.forwarded == sink.events and outcome.duplicates == [] and outcome.ignored == []


async def test_a_message_delivered_twice_in_one_batch_is_forwarded_once_the_first_copy() -> None:
    sink = RecordingSink()
    first, again = _stored(_messages("w1", "w2")), _stored(_messages("w2", "w3"))
    outcome = await forward_webhooks([first, again], InMemoryReceiptStore(), sink)
    assert _wamids(sink.events) == ["w1", "w2", "w3"]
    assert outcome.duplicates == ["m:w2"]
    assert [e.causation_id for e in sink.events] == [str(first.event_id)] * 2 + [str(again.event_id)]


async def test_a_message_delivered_again_in_a_later_batch_is_not_forwarded_again() -> None:
    sink, receipts = RecordingSink(), InMemoryReceiptStore()
    await forward_webhooks([_stored(_messages("w1"))], receipts, sink)
    later = await forward_webhooks([_stored(_messages("w1", "w2"))], receipts, sink)
    assert _wamids(sink.events) == ["w1", "w2"]
    assert _wamids(later.forwarded) == ["w2"] and later.duplicates == ["m:w1"]


async def test_statuses_are_deduplicated_per_wamid_and_status() -> None:
    sink, receipts = RecordingSink(), InMemoryReceiptStore()
    await forward_webhooks([_stored(_statuses(("o1", "delivered")))], receipts, sink)
    outcome = await forward_webhooks([_stored(_statuses(("o1", "delivered"), ("o1", "read")))], receipts, sink)
    assert [e.payload.status for e in sink.events] == ["delivered", "read"]
    assert outcome.duplicates == ["s:o1:delivered"]
    # Message keys and status keys never collide, even for the same wamid.
    message = await forward_webhooks([_stored(_messages("o1"))], receipts, sink)
    assert _wamids(message.forwarded) == ["o1"]


async def test_webhook_errors_have_no_key_and_are_always_forwarded() -> None:
    sink, receipts = RecordingSink(), InMemoryReceiptStore()
    errors = meta.webhook(meta.value(errors=[ERROR]))
    await forward_webhooks([_stored(errors), _stored(errors)], receipts, sink)
    await forward_webhooks([_stored(errors)], receipts, sink)
    assert [type(e) for e in sink.events] == [WebhookErrorReceived] * 3
    assert receipts.seen == set()


async def test_a_failed_publish_records_nothing_so_the_batch_again_forwards_everything() -> None:
    sink, receipts = RecordingSink(), InMemoryReceiptStore()
    batch = [_stored(_messages("w1")), _stored(_statuses(("o1", "sent")))]
    sink.failing = True
    with pytest.raises(ConnectionError):
        await forward_webhooks(batch, receipts, sink)
    assert receipts.seen == set() and sink.published == []
    sink.failing = False
    outcome = await forward_webhooks(batch, receipts, sink)
    assert _wamids(sink.events) == ["w1", "o1"] and outcome.duplicates == []
    assert receipts.seen == {"m:w1", "s:o1:sent"}


async def test_events_carry_the_stored_webhook_s_id_and_trace() -> None:
    sink = RecordingSink()
    stored = _stored(meta.webhook(meta.value(contacts=[meta.contact()], messages=[_text("w1")],
                                             statuses=[meta.status("o1", "read")], errors=[ERROR])),
                     traceparent=TRACEPARENT, tracestate="vendor=1")
    await forward_webhooks([stored], InMemoryReceiptStore(), sink)
    assert len(sink.events) == 3
    for event in sink.events:
        assert (event.causation_id, event.traceparent, event.tracestate) == (str(stored.event_id), TRACEPARENT,
                                                                            "vendor=1")
        assert event.event_id != stored.event_id
    # Each one starts its own conversation-level chain.
    assert len({event.correlation_id for event in sink.events} | {stored.correlation_id}) == 4


async def test_parts_the_split_cannot_use_are_reported_as_ignored() -> None:
    sink = RecordingSink()
    nobody = {"id": "w0", "timestamp": "1", "type": "text", "text": {"body": "?"}}  # no from, no from_user_id
    payload = {"object": "whatsapp_business_account", "entry": [{"id": meta.WABA_ID, "changes": [
        {"field": "messages", "value": meta.value(messages=[nobody, _text("w1")])},
        {"field": "account_update", "value": {"ban_info": {}}}]}]}
    outcome = await forward_webhooks([_stored(payload)], InMemoryReceiptStore(), sink)
    assert _wamids(sink.events) == ["w1"]
    assert outcome.ignored == ["message:w0", "field:account_update"]


async def test_a_batch_with_nothing_to_forward_publishes_nothing() -> None:
    sink = RecordingSink()
    sink.failing = True  # publishing would raise
    outcome = await forward_webhooks([_stored({"object": "page", "entry": []})], InMemoryReceiptStore(), sink)
    assert outcome.forwarded == [] and outcome.ignored == ["object:page"]


@pytest.mark.parametrize("body", ["not json", '{"entry": []}', '{"object": "whatsapp_business_account", "entry": 1}'])
async def test_a_stored_body_that_is_no_webhook_is_unreadable_for_good(body: str) -> None:
    sink, receipts = RecordingSink(), InMemoryReceiptStore()
    poison = _stored(body)
    with pytest.raises(UnreadableWebhook) as raised:
        await forward_webhooks([_stored(_messages("w1")), poison], receipts, sink)
    assert isinstance(raised.value, PermanentError)  # dead-lettered, never retried
    assert str(poison.event_id) in str(raised.value)
    assert sink.published == [] and receipts.seen == set()


async def test_events_name_the_meta_app_whose_secret_verified_the_webhook() -> None:
    sink = RecordingSink()
    stored = _stored(meta.webhook(meta.value(contacts=[meta.contact()], messages=[_text("m1")],
                                             statuses=[meta.status("o1", "sent")])))
    stored = stored.model_copy(update={"payload": stored.payload.model_copy(update={"meta_app_id": "4242"})})
    await forward_webhooks([stored], InMemoryReceiptStore(), sink)
    # The router routes each event only to numbers bound to this app.
    assert [e.payload.meta_app_id for e in sink.events] == ["4242", "4242"]
