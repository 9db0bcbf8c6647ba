from __future__ import annotations

from faststream.kafka import KafkaBroker

from pytake_contracts import Event
from pytake_contracts.topics import CATALOG
from pytake_plumbing.messaging import subscribe
from pytake_plumbing.settings import CommonSettings

from ..service.record import EventStore, record_event


def register(broker: KafkaBroker, settings: CommonSettings, store: EventStore) -> None:
    async def handle(event: Event) -> None:
        await record_event(event, store)

    subscribe(broker, settings, list(CATALOG), service="audit", handler=handle)
