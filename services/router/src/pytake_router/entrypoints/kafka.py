"""Kafka entrypoints: the routing of webhook events (in batches) and registry-change invalidation."""

from __future__ import annotations

from collections.abc import Sequence

from pytake_contracts import Event, InboundMessageReceived, RegistryChanged, StatusReceived
from pytake_contracts.topics import REGISTRY_CHANGES, WEBHOOK_INBOUND
from pytake_plumbing.consumer import Consumer, Subscription, each
from pytake_plumbing.record_producer import RecordProducer
from pytake_plumbing.settings import CommonSettings

from ..service.routing import BatchPublisher, RouteCache, on_registry_changed, route_batch

SERVICE = "router"


def consumers(settings: CommonSettings, cache: RouteCache, producer: RecordProducer, *,
              max_records: int = 500) -> list[Consumer]:
    """The router's consumers, for the app to start and stop. `producer` publishes the routed
    records and the dead letters (a lean producer: see pytake_plumbing.record_producer)."""
    return [Consumer(settings, invalidation(cache), dead_letters=producer),
            Consumer(settings, routing(cache, producer, max_records=max_records), dead_letters=producer)]


def routing(cache: RouteCache, publisher: BatchPublisher, *, max_records: int = 500) -> Subscription:
    # A backlog comes in batches of up to `max_records`: each costs one wait for the publish acks
    # and one offset commit, whatever its size.
    async def route(events: Sequence[Event]) -> None:
        await route_batch(events, cache, publisher)

    return Subscription([WEBHOOK_INBOUND], group=SERVICE, handler=route,
                        accepts=(InboundMessageReceived, StatusReceived), batch=max_records)


def invalidation(cache: RouteCache) -> Subscription:
    # Every replica hears every change: each caches routes of its own.
    async def invalidate(event: Event) -> None:
        assert isinstance(event, RegistryChanged)
        on_registry_changed(event, cache)

    # A broadcast has no group: the name tells its log lines from the revocation feed's.
    return Subscription([REGISTRY_CHANGES], group="route-cache", handler=each(invalidate),
                        accepts=(RegistryChanged,), broadcast=True, batch=1)
