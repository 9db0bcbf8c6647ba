from __future__ import annotations

from faststream.kafka import KafkaBroker

from pytake_contracts import InboundMessageReceived, StatusReceived
from pytake_contracts.topics import WEBHOOK_INBOUND
from pytake_plumbing.messaging import EventPublisher, subscribe
from pytake_plumbing.settings import CommonSettings

from ..service.routing import RouteCache, route_event


def register(broker: KafkaBroker, settings: CommonSettings, cache: RouteCache) -> None:
    publisher = EventPublisher(broker, settings)

    async def handle(event: object) -> None:
        await route_event(event, cache, publisher)  # type: ignore[arg-type]

    subscribe(broker, settings, [WEBHOOK_INBOUND], service="router", handler=handle,
              accepts=(InboundMessageReceived, StatusReceived))
