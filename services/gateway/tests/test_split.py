from pytake_contracts import InboundMessageReceived, StatusReceived
from pytake_gateway.domain.split import split_webhook
from pytake_gateway.domain.webhook import WebhookPayload


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
    kinds = [type(event) for event, _ in result.events]
    assert kinds == [InboundMessageReceived, InboundMessageReceived, StatusReceived, StatusReceived]
    first, key = result.events[0]
    assert isinstance(first, InboundMessageReceived)
    assert first.payload.contact.profile_name == "Ann"
    assert key == "A:p:111"
    assert result.events[2][1] == "B:p:222"
    assert len({event.correlation_id for event, _ in result.events}) == 4


def test_business_scoped_user_without_phone_number() -> None:
    payload = WebhookPayload.model_validate({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": _value("A", contacts=[
            {"user_id": "US.777", "profile": {"name": "Bo"}}], messages=[
            {"from_user_id": "US.777", "id": "wamid.b", "timestamp": "1700000000", "type": "text",
             "text": {"body": "hello"}}])}]}],
    })
    (event, key), = split_webhook(payload).events
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
    replies = [event.payload.message for event, _ in split_webhook(payload).events]
    assert [(m.text, m.reply_id) for m in replies] == [("Yes", "yes"), ("Row 2", "r2"), ("Stop", "STOP")]
    assert replies[2].context_wamid == "wamid.tpl"


def test_unknown_object_and_field_are_ignored_not_failed() -> None:
    other = split_webhook(WebhookPayload.model_validate({"object": "page", "entry": []}))
    assert other.events == [] and other.ignored == ["object:page"]
    field = split_webhook(WebhookPayload.model_validate({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "account_update", "value": {"x": 1}}]}]}))
    assert field.events == [] and field.ignored == ["field:account_update"]
