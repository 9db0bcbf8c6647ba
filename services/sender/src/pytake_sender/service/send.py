"""Use case: send one outbound request through the Graph API, once."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from pytake_contracts import (
    ContactRef,
    Event,
    MessageFailed,
    MessageFailedPayload,
    MessageSent,
    MessageSentPayload,
    OutboundMessageRequested,
)
from pytake_contracts.topics import MESSAGES_DELIVERY, TopicSpec
from pytake_plumbing.logs import get_logger

from ..domain.meta_errors import MetaApiError

PRODUCER = "sender"
log = get_logger(__name__)


class GraphApi(Protocol):
    async def send_text(self, phone_number_id: str, access_token: str, to: ContactRef, body: str) -> str: ...


class Credentials(Protocol):
    async def access_token(self, organization_id: UUID, phone_number_id: str) -> str | None: ...


class Deliveries(Protocol):
    async def claim(self, organization_id: UUID, request_id: UUID, phone_number_id: str) -> str: ...
    async def finish(self, organization_id: UUID, request_id: UUID, *, status: str, attempts: int,
                     wamid: str | None = None, error_code: int | None = None) -> None: ...


class Publisher(Protocol):
    async def publish(self, spec: TopicSpec, event: Event, key: str) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int) -> float:
        # Exponential backoff with full jitter, as Meta asks of throttled senders.
        return random.uniform(0, min(self.max_s, self.base_s * 2 ** (attempt - 1)))


async def send_requested(event: OutboundMessageRequested, graph: GraphApi, credentials: Credentials,
                         deliveries: Deliveries, publisher: Publisher, policy: RetryPolicy) -> str:
    """Returns what happened: sent, failed or duplicate."""
    org = event.organization_id
    assert org is not None
    payload = event.payload
    status = await deliveries.claim(org, event.event_id, payload.phone_number_id)
    if status != "sending":
        log.info("outbound_duplicate_skipped", request_id=str(event.event_id), status=status)
        return "duplicate"
    key = f"{org}:{payload.to.key}"
    token = await credentials.access_token(org, payload.phone_number_id)
    if token is None:
        error = MetaApiError(http_status=0, code=None, message="number unknown or inactive in the tenant registry")
        await _failed(event, error, 0, deliveries, publisher, key)
        return "failed"
    attempt = 0
    while True:
        attempt += 1
        try:
            wamid = await graph.send_text(payload.phone_number_id, token, payload.to, payload.message.body)
        except MetaApiError as error:
            if error.retryable and attempt < policy.max_attempts:
                log.warning("graph_api_retry", code=error.code, http_status=error.http_status, attempt=attempt)
                await asyncio.sleep(policy.delay(attempt))
                continue
            await _failed(event, error, attempt, deliveries, publisher, key)
            return "failed"
        break
    await deliveries.finish(org, event.event_id, status="sent", attempts=attempt, wamid=wamid)
    sent = event.caused(MessageSent, producer=PRODUCER, payload=MessageSentPayload(
        request_id=event.event_id, phone_number_id=payload.phone_number_id, to=payload.to, wamid=wamid,
        conversation_id=payload.conversation_id))
    await publisher.publish(MESSAGES_DELIVERY, sent, key)
    return "sent"


async def _failed(event: OutboundMessageRequested, error: MetaApiError, attempts: int, deliveries: Deliveries,
                  publisher: Publisher, key: str) -> None:
    assert event.organization_id is not None
    log.error("outbound_failed", code=error.code, http_status=error.http_status, attempts=attempts)
    await deliveries.finish(event.organization_id, event.event_id, status="failed", attempts=attempts,
                            error_code=error.code)
    failed = event.caused(MessageFailed, producer=PRODUCER, payload=MessageFailedPayload(
        request_id=event.event_id, phone_number_id=event.payload.phone_number_id, to=event.payload.to,
        error_code=error.code, http_status=error.http_status or None, error_message=error.message,
        attempts=attempts))
    await publisher.publish(MESSAGES_DELIVERY, failed, key)
