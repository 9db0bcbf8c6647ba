"""Registry changes from the router: drop the cached credentials they make stale."""

from __future__ import annotations

from typing import Protocol

from pytake_contracts import Event, RegistryChanged
from pytake_contracts.topics import REGISTRY_CHANGES
from pytake_plumbing.consumer import Consumer, RecordSource, Subscription, each
from pytake_plumbing.settings import CommonSettings

# Changes that cannot alter a Meta app's secrets or verify tokens.
UNRELATED_ENTITIES = {"chatbot", "user"}


class InvalidatableCache(Protocol):
    def invalidate(self, meta_app_id: str | None = None) -> None: ...


def consumers(settings: CommonSettings, cache: InvalidatableCache,
              source: RecordSource | None = None) -> list[Consumer]:
    """`source` stands in for Kafka in unit tests."""
    async def on_registry_changed(event: Event) -> None:
        assert isinstance(event, RegistryChanged)
        change = event.payload
        if change.meta_app_id:
            cache.invalidate(change.meta_app_id)
        elif change.entity not in UNRELATED_ENTITIES:
            cache.invalidate()  # which app changed is not said: forget them all

    # A broadcast: every replica reads every change (from now on; its cache starts empty).
    invalidation = Subscription([REGISTRY_CHANGES], group="gateway", handler=each(on_registry_changed),
                                accepts=(RegistryChanged,), batch=1, broadcast=True)
    return [Consumer(settings, invalidation, dead_letters=None, source=source)]
