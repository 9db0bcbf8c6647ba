"""Turns one webhook POST into one event per message and per status."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import uuid4

from pydantic import ValidationError

from pytake_contracts import (
    ContactRef,
    Event,
    InboundMessage,
    InboundMessagePayload,
    InboundMessageReceived,
    StatusPayload,
    StatusReceived,
)

from .webhook import ChangeValue, WebhookContact, WebhookMessage, WebhookPayload, WebhookStatus

PRODUCER = "gateway"
SUPPORTED_OBJECT = "whatsapp_business_account"


@dataclass(frozen=True)
class SplitResult:
    events: list[tuple[Event, str]]  # (event, partition key)
    ignored: list[str]  # why parts of the payload were skipped


def _contact_for(message: WebhookMessage, contacts: list[WebhookContact]) -> ContactRef:
    for contact in contacts:
        if (message.from_user_id and contact.user_id == message.from_user_id) or (
            message.from_ and contact.wa_id == message.from_
        ):
            name = (contact.profile or {}).get("name")
            return ContactRef(wa_id=message.from_ or contact.wa_id, user_id=message.from_user_id or contact.user_id,
                              profile_name=name)
    return ContactRef(wa_id=message.from_, user_id=message.from_user_id)


def _inbound(message: WebhookMessage) -> InboundMessage:
    raw = message.model_dump(by_alias=True, exclude_none=True)
    text: str | None = None
    reply_id: str | None = None
    if message.type == "text":
        text = (raw.get("text") or {}).get("body")
    elif message.type == "interactive":
        interactive = raw.get("interactive") or {}
        reply = interactive.get("button_reply") or interactive.get("list_reply") or {}
        text, reply_id = reply.get("title"), reply.get("id")
    elif message.type == "button":
        button = raw.get("button") or {}
        text, reply_id = button.get("text"), button.get("payload")
    return InboundMessage(
        wamid=message.id,
        type=message.type,
        timestamp=int(message.timestamp),
        text=text,
        reply_id=reply_id,
        context_wamid=(message.context or {}).get("id"),
        raw=raw,
    )


def _status(status: WebhookStatus, phone_number_id: str) -> StatusPayload:
    return StatusPayload(
        phone_number_id=phone_number_id,
        wamid=status.id,
        status=status.status,
        timestamp=int(status.timestamp),
        recipient=ContactRef(wa_id=status.recipient_id, user_id=status.recipient_user_id),
        errors=status.errors,
        raw=status.model_dump(exclude_none=True),
    )


def split_webhook(payload: WebhookPayload) -> SplitResult:
    """Each message and status starts its own causal chain, with its own correlation id."""
    events: list[tuple[Event, str]] = []
    ignored: list[str] = []
    if payload.object != SUPPORTED_OBJECT:
        return SplitResult([], [f"object:{payload.object}"])
    for entry in payload.entry:
        for change in entry.changes:
            if change.field != "messages":
                ignored.append(f"field:{change.field}")
                continue
            try:
                value = ChangeValue.model_validate(change.value)
            except ValidationError:
                ignored.append("value:invalid")
                continue
            phone_number_id = value.metadata.phone_number_id
            for message in value.messages:
                contact = _contact_for(message, value.contacts)
                event = InboundMessageReceived(
                    correlation_id=str(uuid4()),
                    producer=PRODUCER,
                    payload=InboundMessagePayload(
                        phone_number_id=phone_number_id,
                        display_phone_number=value.metadata.display_phone_number,
                        contact=contact,
                        message=_inbound(message),
                    ),
                )
                events.append((event, f"{phone_number_id}:{contact.key}"))
            for status in value.statuses:
                payload_ = _status(status, phone_number_id)
                event = StatusReceived(correlation_id=str(uuid4()), producer=PRODUCER, payload=payload_)
                events.append((event, f"{phone_number_id}:{payload_.recipient.key}"))
            if value.errors:
                ignored.append("errors:logged")
    return SplitResult(events, ignored)
