"""Realistic Meta webhook bodies, one builder per message type (gateway tests, benchmarks)."""

from __future__ import annotations

import json
import secrets
from typing import Any

PHONE_NUMBER_ID = "106540352242922"
WABA_ID = "102290129340398"
WA_ID = "16505551234"


def wamid() -> str:
    return "wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQz" + secrets.token_hex(8).upper()


def _message(type_: str, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"from": WA_ID, "id": wamid(), "timestamp": "1733011200", "type": type_, **body, **extra}


def _media(kind: str, **fields: Any) -> dict[str, Any]:
    return {kind: {"mime_type": fields.pop("mime_type"), "sha256": "a3f1c0ffee", "id": "1037543291543636", **fields}}


def messages() -> dict[str, dict[str, Any]]:
    """One inbound message of every type Meta sends, each with a fresh wamid, by sample name."""
    return {
        "text": _message("text", {"text": {"body": "Hi, are you open today?"}}),
        "button_reply": _message("interactive", {"interactive": {
            "type": "button_reply", "button_reply": {"id": "opt_yes", "title": "Yes"}}},
            context={"from": "15550100", "id": wamid()}),
        "list_reply": _message("interactive", {"interactive": {
            "type": "list_reply", "list_reply": {"id": "row_croissant", "title": "Croissant",
                                                 "description": "Butter, baked daily"}}},
            context={"from": "15550100", "id": wamid()}),
        "template_button": _message("button", {"button": {"payload": "STOP_PROMOS", "text": "Stop promotions"}},
                                    context={"from": "15550100", "id": wamid()}),
        "image": _message("image", _media("image", mime_type="image/jpeg", caption="Our order")),
        "audio": _message("audio", _media("audio", mime_type="audio/ogg; codecs=opus", voice=True)),
        "video": _message("video", _media("video", mime_type="video/mp4")),
        "document": _message("document", _media("document", mime_type="application/pdf", filename="invoice.pdf",
                                                 caption="Invoice")),
        "sticker": _message("sticker", _media("sticker", mime_type="image/webp", animated=False)),
        "location": _message("location", {"location": {"latitude": 38.7223, "longitude": -9.1393,
                                                       "name": "Demo Bakery", "address": "Rua Augusta 1, Lisboa"}}),
        "contacts": _message("contacts", {"contacts": [{
            "name": {"formatted_name": "Grace Hopper", "first_name": "Grace", "last_name": "Hopper"},
            "phones": [{"phone": "+1 555 0199", "type": "CELL", "wa_id": "15550199"}]}]}),
        "reaction": _message("reaction", {"reaction": {"message_id": wamid(), "emoji": "\U0001F44D"}}),
        "unsupported": _message("unsupported", {"errors": [{
            "code": 131051, "title": "Message type unknown", "message": "Message type unknown",
            "error_data": {"details": "Message type is currently not supported."}}]}),
    }


def contact(name: str = "Ada", wa_id: str | None = WA_ID, user_id: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"profile": {"name": name}}
    if wa_id:
        found["wa_id"] = wa_id
    if user_id:
        found["user_id"] = user_id
    return found


def status(wamid_: str, state: str, **extra: Any) -> dict[str, Any]:
    found = {"id": wamid_, "status": state, "timestamp": "1733011260", "recipient_id": WA_ID, **extra}
    if state != "failed":
        found.setdefault("conversation", {"id": "c0ffee", "origin": {"type": "service"}})
        found.setdefault("pricing", {"billable": True, "pricing_model": "PMP", "category": "service"})
    return found


FAILED_STATUS_ERRORS = [{"code": 131047, "title": "Re-engagement message",
                         "message": "Re-engagement message",
                         "error_data": {"details": "Message failed to send because more than 24 hours have "
                                                   "passed since the customer last replied to this number."}}]


def value(*, messages: list | None = None, statuses: list | None = None, contacts: list | None = None,
          errors: list | None = None, phone_number_id: str = PHONE_NUMBER_ID) -> dict[str, Any]:
    found: dict[str, Any] = {"messaging_product": "whatsapp",
                             "metadata": {"display_phone_number": "15550100", "phone_number_id": phone_number_id}}
    for name, part in (("contacts", contacts), ("messages", messages), ("statuses", statuses), ("errors", errors)):
        if part is not None:
            found[name] = part
    return found


def webhook(*values: dict[str, Any], field: str = "messages", obj: str = "whatsapp_business_account") -> dict:
    return {"object": obj, "entry": [{"id": WABA_ID, "changes": [{"field": field, "value": v} for v in values]}]}


def entries(*webhooks: dict[str, Any]) -> dict[str, Any]:
    """One POST carrying the entries of several webhooks."""
    return {"object": "whatsapp_business_account", "entry": [e for w in webhooks for e in w["entry"]]}


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
