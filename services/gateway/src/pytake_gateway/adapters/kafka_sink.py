from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pytake_contracts import Event
from pytake_contracts.topics import TopicSpec

from ..service.ingest import EventSink, PublishStillPending


class KafkaEventSink:
    """Publishes a webhook's events and waits, up to a deadline, for Kafka to acknowledge all of them.

    The idempotent producer never gives up on a record it has buffered: after a deadline
    the records may still reach Kafka once it is back. So the publish is not cancelled;
    its completion is handed back (PublishStillPending) for the caller to settle later.
    """

    def __init__(self, publisher: EventSink, timeout_s: float) -> None:
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

