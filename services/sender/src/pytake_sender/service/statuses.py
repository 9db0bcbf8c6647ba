"""Use case: join a status webhook (routed by the router) to the message the sender sent.

Any status proves Meta accepted the message, which is how an unanswered send is resolved
(see send.py). Statuses arrive out of order and more than once: each moves the delivery
forward at most once, and only then is MessageStatusUpdated published."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID, uuid5

from pytake_contracts import ContactRef, MessageStatusPayload, MessageStatusUpdated, StatusRouted
from pytake_contracts.topics import MESSAGES_DELIVERY
from pytake_plumbing.logs import get_logger

from ..adapters.db.repository import StatusJoin
from ..domain.delivery_status import RANKS
from ..domain.graph_message import request_id_from_callback
from .send import OUTCOME_IDS, PRODUCER, Publisher

log = get_logger(__name__)


class StatusJoins(Protocol):
    async def join_status(self, organization_id: UUID, request_id: UUID | None, wamid: str,
                          status: str) -> StatusJoin | None: ...


async def join_status(event: StatusRouted, deliveries: StatusJoins, publisher: Publisher) -> str:
    """Returns what happened: joined, unchanged or unknown."""
    payload = event.payload
    org = payload.organization_id
    request_id = request_id_from_callback(payload.raw.get("biz_opaque_callback_data"))
    if payload.status not in RANKS:
        return "unchanged"  # e.g. `deleted`, `warning`: nothing to move forward
    joined = await deliveries.join_status(org, request_id, payload.wamid, payload.status)
    if joined is None:
        # Not sent by PyTake (another tool on the number), or sent before this release.
        log.info("status_for_unknown_message", wamid=payload.wamid)
        return "unknown"
    if not joined.moved_forward:
        return "unchanged"
    to = ContactRef.model_validate_json(joined.recipient) if joined.recipient else payload.recipient
    updated = event.caused(
        MessageStatusUpdated, producer=PRODUCER, organization_id=org,
        event_id=uuid5(OUTCOME_IDS, f"{joined.request_id}:{payload.status}"),
        payload=MessageStatusPayload(
            request_id=joined.request_id, phone_number_id=joined.phone_number_id, to=to, wamid=joined.wamid,
            conversation_id=joined.conversation_id, status=payload.status, timestamp=payload.timestamp,
            errors=payload.errors))
    await publisher.publish(MESSAGES_DELIVERY, updated, f"{org}:{joined.contact_key or to.key}")
    return "joined"
