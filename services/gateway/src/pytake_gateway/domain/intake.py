"""What of a signed webhook POST is stored before Meta gets its 200: one part per business number.

The intake topic is keyed by business number, so each number's webhooks keep their order; a
POST whose changes are all for one number (Meta's usual delivery) is stored exactly as signed.
Parts the gateway does not handle are listed in `ignored`, never raised: Meta would
otherwise retry, for 7 days, a signed payload it will keep sending the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .webhook import WebhookPayload

SUPPORTED_OBJECT = "whatsapp_business_account"
SUPPORTED_FIELD = "messages"


@dataclass(frozen=True)
class IntakePart:
    phone_number_id: str
    body: str  # Meta's webhook JSON, for this number only


@dataclass(frozen=True)
class IntakePlan:
    parts: list[IntakePart]
    ignored: list[str]  # "<kind>:<detail>" for each part skipped


def plan_intake(payload: WebhookPayload, body: bytes) -> IntakePlan:
    if payload.object != SUPPORTED_OBJECT:
        return IntakePlan([], [f"object:{payload.object}"])
    ignored: list[str] = []
    # number -> entry index -> that entry (its own fields kept) with only the number's changes, in Meta's order
    by_number: dict[str, dict[int, dict[str, Any]]] = {}
    for index, entry in enumerate(payload.entry):
        for change in entry.changes:
            if change.field != SUPPORTED_FIELD:
                ignored.append(f"field:{change.field}")
                continue
            number = _phone_number_id(change.value)
            if number is None:
                ignored.append("value:no_phone_number_id")
                continue
            entries = by_number.setdefault(number, {})
            if index not in entries:
                entries[index] = {**entry.model_dump(exclude={"changes"}), "changes": []}
            entries[index]["changes"].append(change.model_dump())
    if len(by_number) == 1 and not ignored:
        return IntakePlan([IntakePart(next(iter(by_number)), body.decode())], [])
    parts = [IntakePart(number, _envelope(payload.object, entries)) for number, entries in by_number.items()]
    return IntakePlan(parts, ignored)


def _phone_number_id(value: dict[str, Any]) -> str | None:
    metadata = value.get("metadata")
    number = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    return number if isinstance(number, str) and number else None


def _envelope(object_: str, entries: dict[int, dict[str, Any]]) -> str:
    return json.dumps({"object": object_, "entry": list(entries.values())}, separators=(",", ":"),
                      ensure_ascii=False)
