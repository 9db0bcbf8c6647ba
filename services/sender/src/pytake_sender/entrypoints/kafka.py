"""Kafka wiring of the sender: the credentials cache refresh, status joins, outbound lanes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

from pytake_contracts import Event, OutboundMessageRequested, RegistryChanged, StatusRouted
from pytake_contracts.topics import MESSAGES_OUTBOUND, REGISTRY_CHANGES, STATUSES_ROUTED
from pytake_plumbing.consumer import BY_KEY, Consumer, Subscription, each
from pytake_plumbing.record_producer import RecordProducer

from ..service.send import Sender
from ..service.statuses import StatusJoins, join_statuses
from ..settings import SenderSettings


STATUS_BATCH = 200


def outbound_requests(send: Callable[[OutboundMessageRequested], Awaitable[object]]) -> Subscription:
    """A lane per conversation (the topic's key): one waiting on a retry, the pair limit or an
    unanswered send holds up no other, and each keeps its order."""
    # `accepts` hands `send` only requests (other events on the topic are skipped).
    return Subscription([MESSAGES_OUTBOUND], group="sender", handler=each(send),  # type: ignore[arg-type]
                        batch=1, lanes=BY_KEY, accepts=(OutboundMessageRequested,))


def consumers(settings: SenderSettings, sender: Sender, deliveries: StatusJoins, publisher: RecordProducer,
              forget_credentials: Callable[[UUID, str], None]) -> list[Consumer]:
    """Started in this order and stopped in the reverse: the outbound lanes stop first, while
    statuses are still joined (a lane waiting on an unanswered send waits for its status)."""

    async def on_registry_change(event: Event) -> None:
        assert isinstance(event, RegistryChanged)
        if event.organization_id and event.payload.phone_number_id:
            forget_credentials(event.organization_id, event.payload.phone_number_id)

    async def on_statuses(events: Sequence[Event]) -> None:
        await join_statuses(events, deliveries, publisher)  # type: ignore[arg-type] # `accepts` lets only statuses in

    return [
        # Every replica drops its own cached token.
        Consumer(settings, Subscription([REGISTRY_CHANGES], group="sender-credentials",
                                        handler=each(on_registry_change), batch=1, accepts=(RegistryChanged,),
                                        broadcast=True),
                 dead_letters=None),
        # A group of its own, apart from the outbound one: statuses are joined while lanes wait.
        # A batch at a time: one transaction and one produce for all the statuses in hand.
        Consumer(settings, Subscription([STATUSES_ROUTED], group="sender-statuses", handler=on_statuses,
                                        batch=STATUS_BATCH, accepts=(StatusRouted,)),
                 dead_letters=publisher),
        Consumer(settings, outbound_requests(sender.handle), dead_letters=publisher,
                 max_buffered=settings.max_buffered, max_active=settings.max_active),
    ]
