"""Use case: resolve the tenant and chatbot of every webhook event."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from pytake_contracts import (
    Event,
    InboundMessageReceived,
    InboundMessageRouted,
    MessageUnroutable,
    RegistryChanged,
    Route,
    RoutedInboundPayload,
    RoutedStatusPayload,
    StatusReceived,
    StatusRouted,
    UnroutablePayload,
)
from pytake_contracts.topics import MESSAGES_ROUTED, MESSAGES_UNROUTABLE, STATUSES_ROUTED, TopicSpec
from pytake_plumbing.logs import get_logger

from ..domain.model import NumberRoute, Unroutable, decide

PRODUCER = "router"
log = get_logger(__name__)

RouteLookup = Callable[[str], Awaitable[NumberRoute | None]]
Outgoing = tuple[TopicSpec, Event, str]


class Publisher(Protocol):
    async def publish(self, spec: TopicSpec, event: Event, key: str) -> None: ...


class BatchPublisher(Publisher, Protocol):
    async def publish_all(self, items: Sequence[Outgoing]) -> None: ...


class RouteCache:
    """phone_number_id → route. Entries are dropped when the registry announces a change
    (every replica hears it); the TTL is only a backstop for a lost announcement."""

    def __init__(self, lookup: RouteLookup, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, NumberRoute | None]] = {}
        # Bumped by every invalidation: a lookup that started before one must not store its stale answer.
        self._generation = 0

    async def get(self, phone_number_id: str) -> NumberRoute | None:
        now = self._clock()
        hit = self._entries.get(phone_number_id)
        if hit and hit[0] > now:
            return hit[1]
        generation = self._generation
        route = await self._lookup(phone_number_id)
        if generation == self._generation:
            self._entries[phone_number_id] = (now + self._ttl_s, route)
        return route

    def invalidate(self, phone_number_id: str | None = None) -> None:
        self._generation += 1
        if phone_number_id is None:
            self._entries.clear()
        else:
            self._entries.pop(phone_number_id, None)


async def routed(event: Event, cache: RouteCache) -> Outgoing | None:
    """The record to publish for one webhook event: routed, or unroutable with the reason."""
    if isinstance(event, InboundMessageReceived):
        phone_number_id = event.payload.phone_number_id
        message = event.payload.message
        text = message.text if message.type == "text" else None
    elif isinstance(event, StatusReceived):
        phone_number_id = event.payload.phone_number_id
        text = None
    else:
        return None
    route = await cache.get(phone_number_id)
    decision = decide(route, text, signed_by=event.payload.meta_app_id)
    if isinstance(decision, Unroutable) and not (
        isinstance(event, StatusReceived) and decision is Unroutable.NO_CHATBOT  # statuses need the tenant only
    ):
        if decision is Unroutable.NOT_BOUND_TO_APP:
            # An operator must see this: a holder of one app's secret wrote to a number of another app.
            log.warning("webhook_for_foreign_number", phone_number_id=phone_number_id,
                        signed_by=event.payload.meta_app_id, event_type=event.event_type)
        unroutable = event.caused(
            MessageUnroutable,
            producer=PRODUCER,
            payload=UnroutablePayload(
                reason=decision.value,
                phone_number_id=phone_number_id,
                original_event_type=event.event_type,
                original=event.model_dump(mode="json"),
            ),
        )
        return MESSAGES_UNROUTABLE, unroutable, phone_number_id
    chosen = decision if isinstance(decision, NumberRoute) else route
    assert chosen is not None
    org = chosen.organization_id
    if isinstance(event, InboundMessageReceived):
        inbound = event.caused(
            InboundMessageRouted,
            producer=PRODUCER,
            organization_id=org,
            # A shallow copy of the fields: nested models pass through without being dumped and re-validated.
            payload=RoutedInboundPayload.model_validate({
                **dict(event.payload),
                "route": Route(organization_id=org, chatbot_id=chosen.chatbot_id, flow_id=chosen.flow_id),
            }),
        )
        return MESSAGES_ROUTED, inbound, f"{org}:{event.payload.contact.key}"
    assert isinstance(event, StatusReceived)
    status = event.caused(
        StatusRouted,
        producer=PRODUCER,
        organization_id=org,
        payload=RoutedStatusPayload.model_validate({**dict(event.payload), "organization_id": org}),
    )
    return STATUSES_ROUTED, status, f"{org}:{event.payload.wamid}"


async def route_event(event: Event, cache: RouteCache, publisher: Publisher) -> None:
    outgoing = await routed(event, cache)
    if outgoing is not None:
        await publisher.publish(*outgoing)


async def route_batch(events: Sequence[Event], cache: RouteCache, publisher: BatchPublisher) -> None:
    """Routes a batch of webhook events and publishes the results together: the batch waits for
    Kafka's acknowledgements once, whatever its size. Nothing is published unless every event was
    routed; a batch handed again after a failure may publish duplicates (consumers deduplicate by wamid)."""
    outgoing: list[Outgoing] = []
    for event in events:
        result = await routed(event, cache)
        if result is not None:
            outgoing.append(result)
    await publisher.publish_all(outgoing)


def on_registry_changed(event: RegistryChanged, cache: RouteCache) -> None:
    """Drop the routes a registry change may have made stale."""
    change = event.payload
    if change.entity == "organization":
        cache.invalidate()
        log.info("route_cache_invalidated", scope="all", entity=change.entity, entity_id=str(change.entity_id))
    elif change.entity in ("number", "chatbot"):
        if change.phone_number_id:
            cache.invalidate(change.phone_number_id)
        else:
            cache.invalidate()
        log.info("route_cache_invalidated", phone_number_id=change.phone_number_id, entity=change.entity,
                 entity_id=str(change.entity_id), change=change.change)
