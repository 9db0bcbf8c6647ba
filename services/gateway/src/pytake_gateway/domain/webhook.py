"""Meta's WhatsApp webhook envelope, as far as the gateway needs to read it.

Unknown fields are kept (extra="allow") so the raw message reaches downstream intact.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Meta(BaseModel):
    model_config = ConfigDict(extra="allow")


class Metadata(_Meta):
    phone_number_id: str
    display_phone_number: str | None = None


class WebhookContact(_Meta):
    wa_id: str | None = None
    user_id: str | None = None
    profile: dict[str, Any] | None = None


class WebhookMessage(_Meta):
    id: str
    type: str
    timestamp: str | int
    from_: str | None = Field(default=None, alias="from")
    from_user_id: str | None = None
    context: dict[str, Any] | None = None


class WebhookStatus(_Meta):
    id: str
    status: str
    timestamp: str | int
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)


class ChangeValue(_Meta):
    messaging_product: str | None = None
    metadata: Metadata
    contacts: list[WebhookContact] = Field(default_factory=list)
    messages: list[WebhookMessage] = Field(default_factory=list)
    statuses: list[WebhookStatus] = Field(default_factory=list)
    errors: list[dict[str, Any]] = Field(default_factory=list)


class Change(_Meta):
    field: str
    value: dict[str, Any]


class Entry(_Meta):
    id: str
    changes: list[Change] = Field(default_factory=list)


class WebhookPayload(_Meta):
    object: str
    entry: list[Entry] = Field(default_factory=list)
