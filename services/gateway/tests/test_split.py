from pytake_contracts import (
    InboundMessageReceived,
    StatusReceived,
    WebhookErrorReceived,
    WebhookReceived,
    WebhookReceivedPayload,
)
from pytake_devstack import meta_samples as meta
from pytake_gateway.domain.split import split_webhook
from pytake_gateway.domain.webhook import WebhookPayload

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _value(phone_number_id: str, **parts: object) -> dict:
    return {"messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550100", "phone_number_id": phone_number_id}, **parts}


def test_every_entry_change_message_and_status_becomes_an_event() -> None:
    payload = WebhookPayload.model_validate({
        "object": "whatsapp_business_account",
        "entry": [
            {"id": "1", "changes": [{"field": "messages", "value": _value("A", contacts=[
                {"wa_id": "111", "profile": {"name": "Ann"}}], messages=[
                {"from": "111", "id": "wamid.a1", "timestamp": "1700000000", "type": "text", "text": {"body": "one"}},
                {"from": "111", "id": "wamid.a2", "timestamp": "1700000001", "type": "text", "text": {"body": "two"}},
            ])}]},
            {"id": "2", "changes": [{"field": "messages", "value": _value("B", statuses=[
                {"id": "wamid.out", "status": "delivered", "timestamp": "1700000002", "recipient_id": "222"},
                {"id": "wamid.out", "status": "read", "timestamp": "1700000003", "recipient_id": "222"},
            ])}]},
        ],
    })
    result = split_webhook(payload)
    kinds = [type(out.event) for out in result.events]
    assert kinds == [InboundMessageReceived, InboundMessageReceived, StatusReceived, StatusReceived]
    first, key = result.events[0].event, result.events[0].key
    assert isinstance(first, InboundMessageReceived)
    assert first.payload.contact.profile_name == "Ann"
    assert key == "A:p:111"
    assert result.events[2].key == "B:p:222"
    assert len({out.event.correlation_id for out in result.events}) == 4


def test_business_scoped_user_without_phone_number() -> None:
    payload = WebhookPayload.model_validate({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": _value("A", contacts=[
            {"user_id": "US.777", "profile": {"name": "Bo"}}], messages=[
            {"from_user_id": "US.777", "id": "wamid.b", "timestamp": "1700000000", "type": "text",
             "text": {"body": "hello"}}])}]}],
    })
    (out,) = split_webhook(payload).events
    event, key = out.event, out.key
    assert isinstance(event, InboundMessageReceived)
    assert event.payload.contact.wa_id is None
    assert key == "A:u:US.777"


def test_interactive_and_button_replies_carry_title_and_id() -> None:
    payload = WebhookPayload.model_validate({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": _value("A", messages=[
            {"from": "1", "id": "w1", "timestamp": "1", "type": "interactive",
             "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes"}}},
            {"from": "1", "id": "w2", "timestamp": "1", "type": "interactive",
             "interactive": {"type": "list_reply", "list_reply": {"id": "r2", "title": "Row 2"}}},
            {"from": "1", "id": "w3", "timestamp": "1", "type": "button", "context": {"id": "wamid.tpl"},
             "button": {"text": "Stop", "payload": "STOP"}},
        ])}]}],
    })
    replies = [out.event.payload.message for out in split_webhook(payload).events]
    assert [(m.text, m.reply_id) for m in replies] == [("Yes", "yes"), ("Row 2", "r2"), ("Stop", "STOP")]
    assert replies[2].context_wamid == "wamid.tpl"


def test_unknown_object_and_field_are_ignored_not_failed() -> None:
    other = split_webhook(WebhookPayload.model_validate({"object": "page", "entry": []}))
    assert other.events == [] and other.ignored == ["object:page"]
    field = split_webhook(WebhookPayload.model_validate({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "account_update", "value": {"x": 1}}]}]}))
    assert field.events == [] and field.ignored == ["field:account_update"]


# --- every message type Meta sends, statuses and webhook errors (realistic bodies) ---


def _split(body: dict):
    return split_webhook(WebhookPayload.model_validate(body))


def test_every_message_type_becomes_one_event_with_meta_s_raw_message() -> None:
    samples = meta.messages()
    result = _split(meta.webhook(meta.value(contacts=[meta.contact()], messages=list(samples.values()))))
    assert result.ignored == []
    assert len(result.events) == len(samples) == 13
    for (name, sample), out in zip(samples.items(), result.events, strict=True):
        assert isinstance(out.event, InboundMessageReceived), name
        message = out.event.payload.message
        assert message.wamid == sample["id"] and message.type == sample["type"], name
        assert message.raw == sample, name  # Meta's message reaches downstream unchanged
        assert out.dedup_key == f"m:{sample['id']}"
        assert out.key == f"{meta.PHONE_NUMBER_ID}:p:{meta.WA_ID}"
    by_name = {name: out.event.payload.message for name, out in zip(samples, result.events, strict=True)}
    assert (by_name["text"].text, by_name["text"].reply_id) == ("Hi, are you open today?", None)
    assert (by_name["button_reply"].text, by_name["button_reply"].reply_id) == ("Yes", "opt_yes")
    assert (by_name["list_reply"].text, by_name["list_reply"].reply_id) == ("Croissant", "row_croissant")
    assert (by_name["template_button"].text, by_name["template_button"].reply_id) == ("Stop promotions",
                                                                                       "STOP_PROMOS")
    assert by_name["button_reply"].context_wamid == samples["button_reply"]["context"]["id"]
    assert by_name["image"].text == "Our order" and by_name["document"].text == "Invoice"
    assert by_name["location"].raw["location"]["latitude"] == 38.7223
    assert by_name["contacts"].raw["contacts"][0]["phones"][0]["wa_id"] == "15550199"
    assert by_name["reaction"].raw["reaction"]["emoji"] == "\U0001F44D"
    assert by_name["unsupported"].raw["errors"][0]["code"] == 131051


def test_statuses_including_failed_with_errors_are_keyed_by_recipient_and_deduplicated_by_status() -> None:
    sent = meta.wamid()
    result = _split(meta.webhook(meta.value(statuses=[
        meta.status(sent, "sent"), meta.status(sent, "delivered"), meta.status(sent, "read"),
        meta.status(meta.wamid(), "failed", errors=meta.FAILED_STATUS_ERRORS),
    ])))
    assert [type(out.event) for out in result.events] == [StatusReceived] * 4
    assert [out.dedup_key for out in result.events[:3]] == [f"s:{sent}:sent", f"s:{sent}:delivered",
                                                             f"s:{sent}:read"]
    failed = result.events[3].event.payload
    assert failed.status == "failed" and failed.errors[0]["code"] == 131047
    assert {out.key for out in result.events} == {f"{meta.PHONE_NUMBER_ID}:p:{meta.WA_ID}"}


def test_webhook_level_errors_become_their_own_events() -> None:
    error = {"code": 131000, "title": "Something went wrong", "message": "Something went wrong",
             "error_data": {"details": "Unknown error"}}
    result = _split(meta.webhook(meta.value(errors=[error])))
    (out,) = result.events
    assert isinstance(out.event, WebhookErrorReceived)
    assert out.event.payload.code == 131000 and out.event.payload.business_account_id == meta.WABA_ID
    assert out.dedup_key is None and out.key == meta.PHONE_NUMBER_ID


def test_several_entries_changes_and_messages_in_one_post_are_all_split() -> None:
    first = meta.webhook(meta.value(contacts=[meta.contact()], messages=[meta.messages()["text"],
                                                                          meta.messages()["image"]]),
                         meta.value(phone_number_id="222", statuses=[meta.status(meta.wamid(), "read")]))
    second = meta.webhook(meta.value(phone_number_id="333", contacts=[meta.contact(wa_id=None, user_id="US.9")],
                                     messages=[{"from_user_id": "US.9", "id": meta.wamid(), "timestamp": "1",
                                                "type": "text", "text": {"body": "hey"}}]))
    result = _split(meta.entries(first, second))
    assert [out.key for out in result.events] == [
        f"{meta.PHONE_NUMBER_ID}:p:{meta.WA_ID}", f"{meta.PHONE_NUMBER_ID}:p:{meta.WA_ID}", f"222:p:{meta.WA_ID}",
        "333:u:US.9"]


def test_a_message_or_status_without_any_contact_id_is_ignored_not_failed() -> None:
    result = _split(meta.webhook(meta.value(
        messages=[{"id": "wamid.x", "timestamp": "1", "type": "text", "text": {"body": "?"}}],
        statuses=[{"id": "wamid.y", "status": "sent", "timestamp": "1"}])))
    assert result.events == [] and result.ignored == ["message:wamid.x", "status:wamid.y"]


def test_events_split_from_a_stored_webhook_carry_its_id_and_trace_each_with_its_own_correlation() -> None:
    cause = WebhookReceived(correlation_id="intake", producer="gateway", traceparent=TRACEPARENT,
                            tracestate="vendor=1", payload=WebhookReceivedPayload(phone_number_id="A", body="{}"))
    payload = WebhookPayload.model_validate(meta.webhook(meta.value(
        contacts=[meta.contact()], messages=[meta.messages()["text"]], statuses=[meta.status(meta.wamid(), "read")],
        errors=[{"code": 1, "title": "t"}])))
    events = [out.event for out in split_webhook(payload, cause=cause).events]
    assert len(events) == 3
    assert {(e.causation_id, e.traceparent, e.tracestate) for e in events} == {
        (str(cause.event_id), TRACEPARENT, "vendor=1")}
    assert len({e.correlation_id for e in events} | {cause.correlation_id}) == 4
    uncaused = [out.event for out in split_webhook(payload).events]
    assert {(e.causation_id, e.traceparent) for e in uncaused} == {(None, None)}


def test_a_messages_change_whose_value_is_no_webhook_value_is_ignored() -> None:
    result = _split({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
        {"field": "messages", "value": {"messages": []}},  # no metadata
        {"field": "messages", "value": _value("A", statuses=[{"id": "w", "status": "sent", "timestamp": "1",
                                                               "recipient_id": "9"}])}]}]})
    assert result.ignored == ["value:invalid"]
    assert [out.dedup_key for out in result.events] == ["s:w:sent"]
