"""Registry changes from the router: drop the cached credentials they make stale."""

from __future__ import annotations

from typing import Protocol

from faststream.kafka import KafkaBroker

from pytake_contracts import Event, RegistryChanged
from pytake_contracts.topics import REGISTRY_CHANGES
from pytake_plumbing.messaging import subscribe
from pytake_plumbing.settings import CommonSettings

# Changes that cannot alter a Meta app's secrets or verify tokens.
UNRELATED_ENTITIES = {"chatbot", "user"}


class InvalidatableCache(Protocol):
    def invalidate(self, meta_app_id: str | None = None) -> None: ...


def register(broker: KafkaBroker, settings: CommonSettings, cache: InvalidatableCache) -> None:
    async def on_registry_changed(event: Event) -> None:
        assert isinstance(event, RegistryChanged)
        change = event.payload
        if change.meta_app_id:
            cache.invalidate(change.meta_app_id)
        elif change.entity not in UNRELATED_ENTITIES:
            cache.invalidate()  # which app changed is not said: forget them all

    # broadcast: every replica reads every change, each in a consumer group of its own.
    subscribe(broker, settings, [REGISTRY_CHANGES], service="gateway", handler=on_registry_changed,
              accepts=(RegistryChanged,), broadcast=True)
