"""How an event becomes its audit document, and how delivery and funnel figures are
derived from those documents: pure functions, no I/O.

The log is insert-only: one document per event (`_id` = event_id, so a redelivered event
is a duplicate key and changes nothing), with a few derived top-level fields
(contact_key, direction, message_type, conversation_id, wamid, flow_id, day, expire_at)
that the queries and indexes use. A message's delivery status and a flow's funnel are
computed from the projected documents when asked: the status is the highest rank seen,
which does not depend on the order statuses arrived in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from uuid import UUID

from pytake_contracts import Event
from pytake_contracts.events import (
    ContactRef,
    ConversationAdvanced,
    ConversationEnded,
    ConversationFailed,
    ConversationHandedOff,
    ConversationStarted,
    InboundMessageReceived,
    InboundMessageRouted,
    MessageSent,
    MessageStatusUpdated,
    OutboundMessageRequested,
    StatusReceived,
    StatusRouted,
)

# Delivery statuses in the order they may only move forward; failed is terminal.
STATUS_RANK: dict[str, int] = {"sent": 1, "delivered": 2, "read": 3, "failed": 4}
RANK_STATUS: dict[int, str] = {rank: status for status, rank in STATUS_RANK.items()}

EVENTS = "events"

INBOUND = "in"
OUTBOUND = "out"

CONVERSATION_EVENTS = (ConversationStarted, ConversationAdvanced, ConversationEnded, ConversationHandedOff,
                       ConversationFailed)


def day_of(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()


def expiry(moment: datetime, retention_days: int) -> datetime:
    return moment.astimezone(UTC) + timedelta(days=retention_days)


CONTACT_FIELDS = ("contact", "to", "recipient")


@cache
def _payload_fields(payload_type: type) -> frozenset[str]:
    """Looked up once per payload class: asking a model for a field it lacks is slow."""
    return frozenset(getattr(payload_type, "model_fields", ()))


def contact_key_of(event: Event) -> str | None:
    payload = event.payload
    if isinstance(event, CONVERSATION_EVENTS):
        return payload.contact_key
    fields = _payload_fields(type(payload))
    for attribute in CONTACT_FIELDS:
        if attribute in fields:
            contact = getattr(payload, attribute)
            if isinstance(contact, ContactRef):
                return contact.key
    return None


def wamid_of(event: Event) -> str | None:
    if isinstance(event, InboundMessageReceived | InboundMessageRouted):
        return event.payload.message.wamid
    if isinstance(event, MessageSent | StatusReceived | StatusRouted | MessageStatusUpdated):
        return event.payload.wamid
    return None


def direction_of(event: Event) -> str | None:
    """Messages as the search sees them: the routed inbound one and the requested outbound one."""
    if isinstance(event, InboundMessageRouted):
        return INBOUND
    if isinstance(event, OutboundMessageRequested):
        return OUTBOUND
    return None


def message_type_of(event: Event) -> str | None:
    if isinstance(event, InboundMessageReceived | InboundMessageRouted):
        return event.payload.message.type
    if isinstance(event, OutboundMessageRequested):
        return event.payload.message.type
    return None


def conversation_id_of(event: Event) -> str | None:
    if "conversation_id" not in _payload_fields(type(event.payload)):
        return None
    conversation_id = event.payload.conversation_id
    return str(conversation_id) if isinstance(conversation_id, UUID) else None


def event_document(event: Event, retention_days: int, recorded_at: datetime) -> dict[str, Any]:
    document: dict[str, Any] = event.model_dump(mode="json")
    document["_id"] = document.pop("event_id")
    document["occurred_at"] = event.occurred_at
    document["recorded_at"] = recorded_at
    document["day"] = day_of(event.occurred_at)
    document["expire_at"] = expiry(event.occurred_at, retention_days)
    derived = {
        "contact_key": contact_key_of(event),
        "direction": direction_of(event),
        "message_type": message_type_of(event),
        "conversation_id": conversation_id_of(event),
        "wamid": wamid_of(event),
        "flow_id": str(event.payload.flow_id) if isinstance(event, CONVERSATION_EVENTS) else None,
    }
    document.update({name: value for name, value in derived.items() if value is not None})
    return document


def status_name(rank: int | None) -> str | None:
    return RANK_STATUS.get(rank) if rank is not None else None


SENT_TYPE = "message.sent"
STATUS_TYPE = "message.status_routed"
DELIVERY_TYPES = [SENT_TYPE, STATUS_TYPE]
CONVERSATION_TYPES = [kind.model_fields["event_type"].default for kind in CONVERSATION_EVENTS]


@dataclass
class Delivery:
    """A sent message's delivery, folded from its events in any order."""

    wamid: str
    rank: int = 0
    at: dict[str, datetime] = field(default_factory=dict)
    request_id: str | None = None
    conversation_id: str | None = None
    contact_key: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str | None:
        return RANK_STATUS.get(self.rank)

    @property
    def delivered(self) -> bool:
        """Read implies delivered, even when Meta's "delivered" webhook never came."""
        return "delivered" in self.at or "read" in self.at

    def apply(self, document: dict[str, Any]) -> None:
        payload = document.get("payload") or {}
        if document["event_type"] == SENT_TYPE:
            name, moment = "sent", document["occurred_at"]
            self.request_id = payload.get("request_id")
            self.conversation_id = payload.get("conversation_id")
            self.contact_key = self.contact_key or document.get("contact_key")
        else:
            name, moment = payload.get("status"), datetime.fromtimestamp(payload.get("timestamp", 0), UTC)
            self.contact_key = self.contact_key or document.get("contact_key")
            if name == "failed":
                self.errors = payload.get("errors") or []
        rank = STATUS_RANK.get(name or "")
        if rank is None:
            return  # deleted / warning: in the log, no step of the timeline
        self.rank = max(self.rank, rank)
        moment = moment.astimezone(UTC)
        self.at[name] = min(self.at.get(name, moment), moment)


def fold_deliveries(documents: list[dict[str, Any]]) -> dict[str, Delivery]:
    deliveries: dict[str, Delivery] = {}
    for document in documents:
        wamid = document.get("wamid")
        if wamid:
            deliveries.setdefault(wamid, Delivery(wamid)).apply(document)
    return deliveries


@dataclass
class ConversationPath:
    reached: set[str] = field(default_factory=set)
    latest: tuple[datetime, str] | None = None
    node_id: str | None = None
    status: str | None = None

    def apply(self, document: dict[str, Any]) -> None:
        payload = document.get("payload") or {}
        node = payload.get("node_id")
        self.reached.update(n for n in [*(payload.get("visited") or []), node] if n)
        order = (document["occurred_at"], document["_id"])
        if self.latest is None or order > self.latest:
            self.latest, self.node_id, self.status = order, node, payload.get("status")


def fold_conversations(documents: list[dict[str, Any]]) -> dict[str, ConversationPath]:
    paths: dict[str, ConversationPath] = {}
    for document in documents:
        paths.setdefault(document["conversation_id"], ConversationPath()).apply(document)
    return paths
