"""Webhook payloads shaped like Meta's, for the demo and the tests."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any


def new_wamid() -> str:
    return "wamid.HBgL" + secrets.token_hex(12).upper()


def sign(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def envelope(phone_number_id: str, value: dict[str, Any], *, display: str = "15550100",
             waba_id: str = "102290129340398") -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{
            "id": waba_id,
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": display, "phone_number_id": phone_number_id},
                    **value,
                },
            }],
        }],
    }


def text_message(phone_number_id: str, text: str, *, wa_id: str | None = "15551234567",
                 user_id: str | None = None, name: str = "Ada", wamid: str | None = None) -> dict[str, Any]:
    contact: dict[str, Any] = {"profile": {"name": name}}
    message: dict[str, Any] = {"id": wamid or new_wamid(), "timestamp": str(int(time.time())), "type": "text",
                               "text": {"body": text}}
    if wa_id:
        contact["wa_id"] = wa_id
        message["from"] = wa_id
    if user_id:
        contact["user_id"] = user_id
        message["from_user_id"] = user_id
    return envelope(phone_number_id, {"contacts": [contact], "messages": [message]})


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()
