"""Use case: every event on every topic lands in the audit log once."""

from __future__ import annotations

from typing import Protocol

from pytake_contracts import Event


class EventStore(Protocol):
    async def record(self, event: Event) -> None: ...


async def record_event(event: Event, store: EventStore) -> None:
    await store.record(event)
