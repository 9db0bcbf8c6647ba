from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pytake_contracts import Event
from pytake_contracts.topics import TopicSpec
from pytake_plumbing.messaging import EventPublisher


class KafkaEventSink:
    """Publishes a webhook's events and waits for Kafka to acknowledge all of them."""

    def __init__(self, publisher: EventPublisher, timeout_s: float) -> None:
        self._publisher = publisher
        self._timeout_s = timeout_s

    async def publish_all(self, items: Sequence[tuple[TopicSpec, Event, str]]) -> None:
        await asyncio.wait_for(self._publisher.publish_all(items), timeout=self._timeout_s)
