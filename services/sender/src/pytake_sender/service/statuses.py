"""Use case: join status webhooks (routed by the router) to the messages the sender sent.

Any status proves Meta accepted the message, which is how an unanswered send is resolved
(see send.py). Statuses arrive out of order and more than once: each moves the delivery
forward at most once, and only then is MessageStatusUpdated published."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Protocol
from uuid import uuid5

from pytake_contracts import ContactRef, MessageStatusPayload, MessageStatusUpdated, StatusRouted
from pytake_contracts.topics import MESSAGES_DELIVERY
from pytake_plumbing.logs import get_logger
from pytake_plumbing.record_producer import Outgoing

from ..adapters.db.repository import StatusJoin, StatusSeen
from ..domain.delivery_status import RANKS
from ..domain.graph_message import request_id_from_callback
from .send import OUTCOME_IDS, PRODUCER

log = get_logger(__name__)


class StatusJoins(Protocol):
    async def join_statuses(self, statuses: Sequence[StatusSeen]) -> list[StatusJoin | None]: ...


class UpdatePublisher(Protocol):
    def publish_all(self, items: Sequence[Outgoing]) -> Awaitable[None]: ...


async def join_statuses(events: Sequence[StatusRouted], deliveries: StatusJoins,
                        publisher: UpdatePublisher) -> list[str]:
    """Joins a batch of statuses in one transaction, then publishes what moved forward, in order.
    Returns what happened to each: joined, unchanged or unknown."""
    wanted = [event for event in events if event.payload.status in RANKS]  # e.g. `deleted`, `warning`: nothing
    joins = iter(await deliveries.join_statuses([
        StatusSeen(event.payload.organization_id,
                   request_id_from_callback(event.payload.raw.get("biz_opaque_callback_data")),
                   event.payload.wamid, event.payload.status) for event in wanted]) if wanted else [])
    outcomes, updates = [], []
    for event in events:
        joined = next(joins) if event.payload.status in RANKS else None
        if event.payload.status not in RANKS or (joined is not None and not joined.moved_forward):
            outcomes.append("unchanged")
        elif joined is None:
            # Not sent by PyTake (another tool on the number), or sent before this release.
            log.info("status_for_unknown_message", wamid=event.payload.wamid)
            outcomes.append("unknown")
        else:
            outcomes.append("joined")
            updates.append(_update(event, joined))
    if updates:
        await publisher.publish_all(updates)
    return outcomes


def _update(event: StatusRouted, joined: StatusJoin) -> Outgoing:
    payload = event.payload
    org = payload.organization_id
    to = ContactRef.model_validate_json(joined.recipient) if joined.recipient else payload.recipient
    updated = event.caused(
        MessageStatusUpdated, producer=PRODUCER, organization_id=org,
        event_id=uuid5(OUTCOME_IDS, f"{joined.request_id}:{payload.status}"),
        payload=MessageStatusPayload(
            request_id=joined.request_id, phone_number_id=joined.phone_number_id, to=to, wamid=joined.wamid,
            conversation_id=joined.conversation_id, status=payload.status, timestamp=payload.timestamp,
            errors=payload.errors))
    return MESSAGES_DELIVERY, updated, f"{org}:{joined.contact_key or to.key}"
