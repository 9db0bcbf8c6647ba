"""Turns one webhook POST into one event per message, per status and per error."""

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
    WebhookErrorPayload,
    WebhookErrorReceived,
)

from .intake import SUPPORTED_FIELD, SUPPORTED_OBJECT
from .webhook import ChangeValue, WebhookContact, WebhookMessage, WebhookPayload, WebhookStatus

PRODUCER = "gateway"


@dataclass(frozen=True)
class Outgoing:
    """One event to publish, its partition key, and the key that recognises a redelivery of it."""

    event: Event
    key: str
    dedup_key: str | None


@dataclass(frozen=True)
class SplitResult:
    events: list[Outgoing]
    ignored: list[str]  # "<kind>:<detail>" for each part skipped


def message_dedup_key(wamid: str) -> str:
    return f"m:{wamid}"


def status_dedup_key(wamid: str, status: str) -> str:
    return f"s:{wamid}:{status}"


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
    elif message.type in {"image", "video", "document"}:
        text = (raw.get(message.type) or {}).get("caption")
    return InboundMessage(
        wamid=message.id,
        type=message.type,
        timestamp=int(message.timestamp),
        text=text,
        reply_id=reply_id,
        context_wamid=(message.context or {}).get("id"),
        raw=raw,
    )


def _origin(cause: Event | None) -> dict[str, str | None]:
    """Envelope fields that tie an event to the stored webhook it was split from (and its trace)."""
    if cause is None:
        return {}
    return {"causation_id": str(cause.event_id), "traceparent": cause.traceparent, "tracestate": cause.tracestate}


def _message_event(message: WebhookMessage, value: ChangeValue, meta_app_id: str | None,
                   origin: dict[str, str | None]) -> Outgoing:
    phone_number_id = value.metadata.phone_number_id
    contact = _contact_for(message, value.contacts)
    event = InboundMessageReceived(
        correlation_id=str(uuid4()),
        producer=PRODUCER,
        **origin,
        payload=InboundMessagePayload(
            phone_number_id=phone_number_id,
            meta_app_id=meta_app_id,
            display_phone_number=value.metadata.display_phone_number,
            contact=contact,
            message=_inbound(message),
        ),
    )
    return Outgoing(event, f"{phone_number_id}:{contact.key}", message_dedup_key(message.id))


def _status_event(status: WebhookStatus, phone_number_id: str, meta_app_id: str | None,
                  origin: dict[str, str | None]) -> Outgoing:
    payload = StatusPayload(
        phone_number_id=phone_number_id,
        meta_app_id=meta_app_id,
        wamid=status.id,
        status=status.status,
        timestamp=int(status.timestamp),
        recipient=ContactRef(wa_id=status.recipient_id, user_id=status.recipient_user_id),
        errors=status.errors,
        raw=status.model_dump(exclude_none=True),
    )
    event = StatusReceived(correlation_id=str(uuid4()), producer=PRODUCER, payload=payload, **origin)
    return Outgoing(event, f"{phone_number_id}:{payload.recipient.key}", status_dedup_key(status.id, status.status))


def _error_event(error: dict, entry_id: str, phone_number_id: str, origin: dict[str, str | None]) -> Outgoing:
    payload = WebhookErrorPayload(
        phone_number_id=phone_number_id,
        business_account_id=entry_id,
        code=error.get("code") if isinstance(error.get("code"), int) else None,
        title=error.get("title"),
        message=error.get("message"),
        raw=error,
    )
    event = WebhookErrorReceived(correlation_id=str(uuid4()), producer=PRODUCER, payload=payload, **origin)
    # No id of its own to recognise a redelivery: a repeated error is harmless, so it is not deduplicated.
    return Outgoing(event, phone_number_id, None)


def _value_events(value: ChangeValue, entry_id: str, meta_app_id: str | None, origin: dict[str, str | None]
                  ) -> tuple[list[Outgoing], list[str]]:
    events: list[Outgoing] = []
    ignored: list[str] = []
    phone_number_id = value.metadata.phone_number_id
    for message in value.messages:
        try:
            events.append(_message_event(message, value, meta_app_id, origin))
        except (ValidationError, ValueError):
            ignored.append(f"message:{message.id}")
    for status in value.statuses:
        try:
            events.append(_status_event(status, phone_number_id, meta_app_id, origin))
        except (ValidationError, ValueError):
            ignored.append(f"status:{status.id}")
    for error in value.errors:
        events.append(_error_event(error, entry_id, phone_number_id, origin))
    return events, ignored


def split_webhook(payload: WebhookPayload, cause: Event | None = None, meta_app_id: str | None = None
                  ) -> SplitResult:
    """Each message, status and error starts its own causal chain, with its own correlation id;
    `cause` is the stored webhook the payload came from (its id and trace carry on), and
    `meta_app_id` the app whose secret verified it, which the router holds the numbers to.

    Parts the gateway does not handle are listed in `ignored`, never raised: Meta would
    otherwise retry a signed payload it will keep sending the same way for 7 days.
    """
    if payload.object != SUPPORTED_OBJECT:
        return SplitResult([], [f"object:{payload.object}"])
    events: list[Outgoing] = []
    ignored: list[str] = []
    origin = _origin(cause)
    for entry in payload.entry:
        for change in entry.changes:
            if change.field != SUPPORTED_FIELD:
                ignored.append(f"field:{change.field}")
                continue
            try:
                value = ChangeValue.model_validate(change.value)
            except ValidationError:
                ignored.append("value:invalid")
                continue
            found, skipped = _value_events(value, entry.id, meta_app_id, origin)
            events += found
            ignored += skipped
    return SplitResult(events, ignored)
