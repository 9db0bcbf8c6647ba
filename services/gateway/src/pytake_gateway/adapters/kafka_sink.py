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
        if not completion.done():
            await _done_or_timeout(completion, self._timeout_s)
        if not completion.done():
            raise PublishStillPending(completion)
        completion.result()


async def _done_or_timeout(future: asyncio.Future[None], timeout_s: float) -> None:
    """Waits for `future` at most `timeout_s`, leaving it running: asyncio.wait without its
    task and set bookkeeping, which costs a webhook more than the produce call."""
    loop = future.get_loop()  # not get_running_loop(): on Python 3.11 that is a getpid() system call
    waiter = loop.create_future()

    def wake(_: object) -> None:
        if not waiter.done():
            waiter.set_result(None)

    future.add_done_callback(wake)
    timer = loop.call_later(timeout_s, wake, None)
    try:
        await waiter
    finally:
        timer.cancel()
        future.remove_done_callback(wake)


class AcknowledgedSink:
    """Waits as long as Kafka takes (the producer reports failure after its delivery timeout):
    the forwarder commits a batch only once every event of it is acknowledged."""

    def __init__(self, publisher: EventsPublisher) -> None:
        self._publisher = publisher

    async def publish_all(self, items: Sequence[tuple[TopicSpec, Event, str]]) -> None:
        await self._publisher.publish_all(items)
