"""Use case of the gateway's forwarder: stored webhooks become one event per message, status and
error, each passed downstream once however often Meta delivered it.

A batch of stored webhooks is split, its deduplication keys are recorded as seen in one
transaction, and only keys seen for the first time are published. The transaction commits
after Kafka acknowledged the events: a failed publish records nothing and the batch comes
again. Redeliveries land in the same batch or a later one; either way the first copy wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import ValidationError

from pytake_contracts import Event, WebhookReceived
from pytake_contracts.topics import WEBHOOK_INBOUND
from pytake_plumbing.messaging import PermanentError

from ..domain.split import Outgoing, split_webhook
from ..domain.webhook import WebhookPayload
from .ingest import EventSink


class ReceiptStore(Protocol):
    def record(self, keys: Sequence[str]) -> AbstractAsyncContextManager[set[str]]:
        """A transaction that records `keys` (in any order) as seen, and yields those seen for the first time.

        Committed when the block succeeds, rolled back when it raises. Raises ReceiptsUnavailable
        when the store cannot be reached.
        """
        ...


class ReceiptsUnavailable(ConnectionError):
    """The receipt store is down: the batch waits, nothing is forwarded without deduplication."""


class UnreadableWebhook(PermanentError):
    """A stored webhook that is not Meta's webhook JSON: dead-lettered, never retried."""


@dataclass
class ForwardOutcome:
    forwarded: list[Event] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # dedup keys of redeliveries, not forwarded
    ignored: list[str] = field(default_factory=list)


async def forward_webhooks(received: Sequence[WebhookReceived], receipts: ReceiptStore,
                           sink: EventSink) -> ForwardOutcome:
    outcome = ForwardOutcome()
    outgoing: list[Outgoing] = []
    for webhook in received:
        split = split_webhook(_payload(webhook), cause=webhook, meta_app_id=webhook.payload.meta_app_id)
        outgoing += split.events
        outcome.ignored += split.ignored
    keys = list({item.dedup_key for item in outgoing if item.dedup_key is not None})
    async with receipts.record(keys) as seen_first:
        first_seen = set(seen_first)
        chosen: list[Outgoing] = []
        for item in outgoing:
            if item.dedup_key is None:
                chosen.append(item)
            elif item.dedup_key in first_seen:
                first_seen.discard(item.dedup_key)  # a second copy in this batch is a redelivery
                chosen.append(item)
            else:
                outcome.duplicates.append(item.dedup_key)
        if chosen:
            await sink.publish_all([(WEBHOOK_INBOUND, item.event, item.key) for item in chosen])
    outcome.forwarded = [item.event for item in chosen]
    return outcome


def _payload(webhook: WebhookReceived) -> WebhookPayload:
    try:
        return WebhookPayload.model_validate_json(webhook.payload.body)
    except ValidationError as exc:
        raise UnreadableWebhook(f"stored webhook {webhook.event_id} is not a webhook payload: {exc}") from exc
