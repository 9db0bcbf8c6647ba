from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Protocol

from pytake_contracts import Event
from pytake_contracts.topics import TopicSpec

from ..service.ingest import PublishStillPending


class EventsPublisher(Protocol):
    def publish_all(self, items: Sequence[tuple[TopicSpec, Event, str]]) -> Awaitable[None]:
        """Done once Kafka acknowledged every record."""
        ...


class KafkaEventSink:
    """Publishes a webhook's events and waits, up to a deadline, for Kafka to acknowledge all of them.

    The idempotent producer never gives up on a record it has buffered: after a deadline
    the records may still reach Kafka once it is back. So the publish is not cancelled;
    its completion is handed back (PublishStillPending) for the caller to settle later.
    """

    def __init__(self, publisher: EventsPublisher, timeout_s: float) -> None:
        self._publisher = publisher
        self._timeout_s = timeout_s

    async def publish_all(self, items: Sequence[tuple[TopicSpec, Event, str]]) -> None:
        completion = asyncio.ensure_future(self._publisher.publish_all(items))
        done, _ = await asyncio.wait({completion}, timeout=self._timeout_s)
        if not done:
            raise PublishStillPending(completion)
        completion.result()
