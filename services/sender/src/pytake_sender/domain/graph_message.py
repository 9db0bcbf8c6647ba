"""The JSON body of a Graph API send, for each kind of outbound message."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from pytake_contracts import (
    ContactRef,
    OutboundButtons,
    OutboundList,
    OutboundMedia,
    OutboundTemplate,
    OutboundText,
)
from pytake_contracts.events import OutboundMessage

CALLBACK_PREFIX = "pytake:"


def callback_data(request_id: UUID) -> str:
    """Meta echoes `biz_opaque_callback_data` in the status webhooks of the message: it is how
    an unanswered send is later recognised as sent."""
    return f"{CALLBACK_PREFIX}{request_id}"


def request_id_from_callback(value: object) -> UUID | None:
    if not isinstance(value, str) or not value.startswith(CALLBACK_PREFIX):
        return None
    try:
        return UUID(value[len(CALLBACK_PREFIX):])
    except ValueError:
        return None


def graph_body(message: OutboundMessage, to: ContactRef, request_id: UUID) -> dict[str, Any]:
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual",
                            "biz_opaque_callback_data": callback_data(request_id)}
    # A contact known only by its business-scoped id is addressed with it.
    if to.wa_id:
        body["to"] = to.wa_id
    else:
        body["recipient"] = to.user_id
    body.update(_content(message))
    return body


def _content(message: OutboundMessage) -> dict[str, Any]:
    if isinstance(message, OutboundText):
        return {"type": "text", "text": {"body": message.body, "preview_url": False}}
    if isinstance(message, OutboundButtons):
        return {"type": "interactive", "interactive": _interactive(message, "button", {
            "buttons": [{"type": "reply", "reply": {"id": b.id, "title": b.title}} for b in message.buttons]})}
    if isinstance(message, OutboundList):
        return {"type": "interactive", "interactive": _interactive(message, "list", {
            "button": message.button,
            "sections": [_section(s.title, [_row(r.id, r.title, r.description) for r in s.rows])
                         for s in message.sections]})}
    if isinstance(message, OutboundTemplate):
        template: dict[str, Any] = {"name": message.name, "language": {"code": message.language}}
        if message.components:
            template["components"] = message.components
        return {"type": "template", "template": template}
    assert isinstance(message, OutboundMedia)
    media: dict[str, Any] = {"link": message.link} if message.link else {"id": message.media_id}
    if message.caption and message.type in ("image", "video", "document"):
        media["caption"] = message.caption
    if message.filename and message.type == "document":
        media["filename"] = message.filename
    return {"type": message.type, message.type: media}


def _interactive(message: OutboundButtons | OutboundList, kind: str, action: dict[str, Any]) -> dict[str, Any]:
    interactive: dict[str, Any] = {"type": kind, "body": {"text": message.body}, "action": action}
    if message.header:
        interactive["header"] = {"type": "text", "text": message.header}
    if message.footer:
        interactive["footer"] = {"text": message.footer}
    return interactive


def _section(title: str | None, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"title": title, "rows": rows} if title else {"rows": rows}


def _row(row_id: str, title: str, description: str | None) -> dict[str, Any]:
    row = {"id": row_id, "title": title}
    if description:
        row["description"] = description
    return row
