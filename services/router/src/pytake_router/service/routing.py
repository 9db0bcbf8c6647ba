"""Use case: resolve the tenant and chatbot of every webhook event."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from pytake_contracts import (
    Event,
    InboundMessageReceived,
    InboundMessageRouted,
    MessageUnroutable,
    Route,
    RoutedInboundPayload,
    RoutedStatusPayload,
    StatusReceived,
    StatusRouted,
    UnroutablePayload,
)
from pytake_contracts.topics import MESSAGES_ROUTED, MESSAGES_UNROUTABLE, STATUSES_ROUTED, TopicSpec

from ..domain.model import NumberRoute, Unroutable, decide

PRODUCER = "router"

RouteLookup = Callable[[str], Awaitable[NumberRoute | None]]


class Publisher(Protocol):
    async def publish(self, spec: TopicSpec, event: Event, key: str) -> None: ...


class RouteCache:
    """phone_number_id → route, kept for a short TTL so hot numbers cost no query."""

    def __init__(self, lookup: RouteLookup, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, NumberRoute | None]] = {}

    async def get(self, phone_number_id: str) -> NumberRoute | None:
        now = self._clock()
        hit = self._entries.get(phone_number_id)
        if hit and hit[0] > now:
            return hit[1]
        route = await self._lookup(phone_number_id)
        self._entries[phone_number_id] = (now + self._ttl_s, route)
        return route

    def invalidate(self, phone_number_id: str | None = None) -> None:
        if phone_number_id is None:
            self._entries.clear()
        else:
            self._entries.pop(phone_number_id, None)


async def route_event(event: Event, cache: RouteCache, publisher: Publisher) -> None:
    if isinstance(event, InboundMessageReceived):
        phone_number_id = event.payload.phone_number_id
    elif isinstance(event, StatusReceived):
        phone_number_id = event.payload.phone_number_id
    else:
        return
    decision = decide(await cache.get(phone_number_id))
    if isinstance(decision, Unroutable):
        if isinstance(event, StatusReceived) and decision is Unroutable.NO_CHATBOT:
            pass  # statuses need the tenant only, not a chatbot
        else:
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
            await publisher.publish(MESSAGES_UNROUTABLE, unroutable, phone_number_id)
            return
    route = await cache.get(phone_number_id)
    assert route is not None
    org = route.organization_id
    if isinstance(event, InboundMessageReceived):
        routed = event.caused(
            InboundMessageRouted,
            producer=PRODUCER,
            organization_id=org,
            payload=RoutedInboundPayload(
                **event.payload.model_dump(),
                route=Route(organization_id=org, chatbot_id=route.chatbot_id, flow_id=route.flow_id),
            ),
        )
        await publisher.publish(MESSAGES_ROUTED, routed, f"{org}:{event.payload.contact.key}")
    else:
        assert isinstance(event, StatusReceived)
        status = event.caused(
            StatusRouted,
            producer=PRODUCER,
            organization_id=org,
            payload=RoutedStatusPayload(**event.payload.model_dump(), organization_id=org),
        )
        await publisher.publish(STATUSES_ROUTED, status, f"{org}:{event.payload.wamid}")
