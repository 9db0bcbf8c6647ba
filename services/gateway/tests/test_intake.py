"""What of a signed POST is stored: one part per business number, the raw body when there is one number."""

import json

from pytake_devstack import meta_samples as meta
from pytake_gateway.domain.intake import IntakePart, plan_intake
from pytake_gateway.domain.split import split_webhook
from pytake_gateway.domain.webhook import WebhookPayload


def _plan(body: bytes):
    return plan_intake(WebhookPayload.model_validate_json(body), body)


def _message(wamid: str, text: str) -> dict:
    return {"from": meta.WA_ID, "id": wamid, "timestamp": "1700000000", "type": "text", "text": {"body": text}}


def _numbers_in(body: str) -> list[str]:
    return [change["value"]["metadata"]["phone_number_id"]
            for entry in json.loads(body)["entry"] for change in entry["changes"]]


def test_one_number_is_stored_as_the_raw_body_even_with_meta_s_own_spacing() -> None:
    payload = meta.webhook(meta.value(contacts=[meta.contact(name="Jos\u00e9")], messages=[meta.messages()["text"]],
                                      statuses=[meta.status(meta.wamid(), "read")]))
    # Not the compact form re-encoding would give: what Meta signed is kept byte for byte.
    body = json.dumps(payload, indent=2).encode()
    plan = _plan(body)
    assert plan.parts == [IntakePart(meta.PHONE_NUMBER_ID, body.decode())]
    assert plan.ignored == []


def test_one_number_in_several_entries_is_still_the_raw_body() -> None:
    body = meta.encode(meta.entries(meta.webhook(meta.value(messages=[_message("w1", "a")])),
                                    meta.webhook(meta.value(statuses=[meta.status("w0", "sent")]))))
    (part,) = _plan(body).parts
    assert part == IntakePart(meta.PHONE_NUMBER_ID, body.decode())


def test_several_numbers_get_one_envelope_each_with_their_changes_in_meta_s_order() -> None:
    a1, b1, a2 = (meta.value(phone_number_id="A", messages=[_message("wa1", "first")]),
                  meta.value(phone_number_id="B", messages=[_message("wb1", "second")]),
                  meta.value(phone_number_id="A", statuses=[meta.status("wa0", "delivered")]))
    first_entry = {"id": "waba-1", "changes": [{"field": "messages", "value": a1},
                                               {"field": "messages", "value": b1}]}
    second_entry = {"id": "waba-2", "changes": [{"field": "messages", "value": a2}]}
    body = meta.encode({"object": "whatsapp_business_account", "entry": [first_entry, second_entry]})
    plan = _plan(body)
    assert [part.phone_number_id for part in plan.parts] == ["A", "B"]
    assert plan.ignored == []
    a, b = (json.loads(part.body) for part in plan.parts)
    assert a == {"object": "whatsapp_business_account", "entry": [
        {"id": "waba-1", "changes": [{"field": "messages", "value": a1}]},
        {"id": "waba-2", "changes": [{"field": "messages", "value": a2}]}]}
    assert b == {"object": "whatsapp_business_account", "entry": [
        {"id": "waba-1", "changes": [{"field": "messages", "value": b1}]}]}


def test_each_envelope_splits_into_its_own_number_s_events_only() -> None:
    body = meta.encode(meta.webhook(
        meta.value(phone_number_id="A", contacts=[meta.contact(name="\U0001F600 Z\u00f6e")],
                   messages=[_message("wa", "ol\u00e1")]),
        meta.value(phone_number_id="B", statuses=[meta.status("wb", "read")])))
    parts = _plan(body).parts
    for part in parts:
        assert set(_numbers_in(part.body)) == {part.phone_number_id}
    events = [split_webhook(WebhookPayload.model_validate_json(part.body)).events for part in parts]
    assert [[out.dedup_key for out in found] for found in events] == [["m:wa"], ["s:wb:read"]]
    # Not escaped or mangled: the contact's name and the text reach downstream as sent.
    message = events[0][0].event.payload
    assert message.contact.profile_name == "\U0001F600 Z\u00f6e" and message.message.text == "ol\u00e1"


def test_an_unknown_object_is_ignored_whole() -> None:
    plan = _plan(meta.encode({"object": "instagram", "entry": [{"id": "1", "changes": []}]}))
    assert plan.parts == [] and plan.ignored == ["object:instagram"]


def test_an_unknown_field_is_ignored_and_the_rest_stored_without_it() -> None:
    messages = meta.value(messages=[_message("w1", "hi")])
    body = meta.encode({"object": "whatsapp_business_account", "entry": [{"id": meta.WABA_ID, "changes": [
        {"field": "account_update", "value": {"phone_number": "1555", "event": "VERIFIED_ACCOUNT"}},
        {"field": "messages", "value": messages}]}]})
    plan = _plan(body)
    assert plan.ignored == ["field:account_update"]
    (part,) = plan.parts
    # Not the raw body: that would carry the ignored change along.
    assert part.phone_number_id == meta.PHONE_NUMBER_ID and part.body != body.decode()
    assert json.loads(part.body)["entry"] == [{"id": meta.WABA_ID, "changes": [{"field": "messages",
                                                                              "value": messages}]}]


def test_a_change_without_a_business_number_is_ignored() -> None:
    no_metadata = {"messaging_product": "whatsapp", "messages": [_message("w1", "x")]}
    empty_number = {"metadata": {"phone_number_id": ""}, "messages": [_message("w2", "x")]}
    numeric_number = {"metadata": {"phone_number_id": 12345}, "messages": [_message("w3", "x")]}
    metadata_not_an_object = {"metadata": "A", "messages": [_message("w4", "x")]}
    body = meta.encode(meta.webhook(no_metadata, empty_number, numeric_number, metadata_not_an_object))
    plan = _plan(body)
    assert plan.parts == []
    assert plan.ignored == ["value:no_phone_number_id"] * 4


def test_nothing_for_the_gateway_means_no_parts() -> None:
    plan = _plan(meta.encode({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": []}]}))
    assert plan.parts == [] and plan.ignored == []


def test_an_envelope_keeps_the_other_fields_meta_sent_with_an_entry_and_a_change() -> None:
    a, b = (meta.value(phone_number_id=n, messages=[_message(f"w{n}", n)]) for n in ("A", "B"))
    entry = {"id": "waba-1", "time": 1700000000, "changes": [{"field": "messages", "value": a, "seq": 1},
                                                             {"field": "messages", "value": b, "seq": 2}]}
    body = meta.encode({"object": "whatsapp_business_account", "entry": [entry]})
    stored_a, stored_b = (json.loads(part.body) for part in _plan(body).parts)
    assert stored_a["entry"] == [{"id": "waba-1", "time": 1700000000,
                                  "changes": [{"field": "messages", "value": a, "seq": 1}]}]
    assert stored_b["entry"][0]["changes"] == [{"field": "messages", "value": b, "seq": 2}]
