"""Events shaped as the other services publish them: for the audit's tests and its benchmark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from pytake_contracts.events import (
    ContactRef,
    ConversationAdvanced,
    ConversationEnded,
    ConversationPayload,
    ConversationStarted,
    InboundMessage,
    InboundMessageRouted,
    MessageFailed,
    MessageFailedPayload,
    MessageSent,
    MessageSentPayload,
    OutboundMessageRequested,
    OutboundRequestPayload,
    OutboundText,
    RoutedInboundPayload,
    RoutedStatusPayload,
    Route,
    StatusRouted,
)

PHONE = "100000000000001"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def inbound(org: UUID, wa_id: str, text: str, at: datetime, wamid: str | None = None,
            kind: str = "text") -> InboundMessageRouted:
    return InboundMessageRouted(
        organization_id=org, correlation_id=uuid4().hex, producer="router", occurred_at=at,
        payload=RoutedInboundPayload(
            phone_number_id=PHONE, contact=ContactRef(wa_id=wa_id),
            message=InboundMessage(wamid=wamid or f"wamid.in.{uuid4().hex}", type=kind,
                                   timestamp=int(at.timestamp()), text=text),
            route=Route(organization_id=org, chatbot_id=None, flow_id=None)))


def outbound(cause: InboundMessageRouted, conversation_id: UUID, body: str,
             at: datetime | None = None) -> OutboundMessageRequested:
    return cause.caused(OutboundMessageRequested, producer="flow-engine",
                        occurred_at=at or cause.occurred_at + timedelta(milliseconds=50),
                        payload=OutboundRequestPayload(phone_number_id=PHONE, to=cause.payload.contact,
                                                       conversation_id=conversation_id,
                                                       message=OutboundText(body=body)))


def sent(request: OutboundMessageRequested, wamid: str, at: datetime | None = None) -> MessageSent:
    return request.caused(MessageSent, producer="sender",
                          occurred_at=at or request.occurred_at + timedelta(milliseconds=100),
                          payload=MessageSentPayload(request_id=request.event_id, phone_number_id=PHONE,
                                                     to=request.payload.to, wamid=wamid,
                                                     conversation_id=request.payload.conversation_id))


def send_failed(request: OutboundMessageRequested, at: datetime | None = None) -> MessageFailed:
    return request.caused(MessageFailed, producer="sender",
                          occurred_at=at or request.occurred_at + timedelta(milliseconds=100),
                          payload=MessageFailedPayload(request_id=request.event_id, phone_number_id=PHONE,
                                                       to=request.payload.to, error_code=131047,
                                                       error_message="outside the 24 h window", attempts=1))


def status(org: UUID, wamid: str, name: str, at: datetime, wa_id: str = "15550001111",
           errors: list[dict] | None = None) -> StatusRouted:
    return StatusRouted(organization_id=org, correlation_id=uuid4().hex, producer="router", occurred_at=at,
                        payload=RoutedStatusPayload(phone_number_id=PHONE, wamid=wamid, status=name,
                                                    timestamp=int(at.timestamp()),
                                                    recipient=ContactRef(wa_id=wa_id), errors=errors or [],
                                                    organization_id=org))


def conversation(kind: type[ConversationStarted | ConversationAdvanced | ConversationEnded], cause: InboundMessageRouted, conversation_id: UUID, flow_id: UUID, node_id: str,
                 state: str, visited: list[str], at: datetime | None = None):
    return cause.caused(kind, producer="flow-engine",
                        occurred_at=at or cause.occurred_at + timedelta(milliseconds=20),
                        payload=ConversationPayload(conversation_id=conversation_id, flow_id=flow_id,
                                                    flow_version=1, contact_key=cause.payload.contact.key,
                                                    node_id=node_id, status=state, visited=visited))
