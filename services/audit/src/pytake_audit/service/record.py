"""Use case: every event on every topic lands in the audit log once, in batches."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from pytake_contracts import Event

from ..domain.documents import event_document


class EventStore(Protocol):
    async def insert_events(self, documents: Sequence[dict[str, Any]]) -> int: ...


class RetentionStore(Protocol):
    async def all(self) -> dict[str, int]: ...


class RetentionPolicy:
    """Days to keep an organization's audit documents, cached and refreshed now and then
    (a change made through another replica is seen within `refresh_s`)."""

    def __init__(self, store: RetentionStore, default_days: int, refresh_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self.default_days = default_days
        self._refresh_s = refresh_s
        self._clock = clock
        self._days: dict[str, int] = {}
        self._loaded_at: float | None = None

    async def days_for(self, organization_id: str | None) -> int:
        if self._loaded_at is None or self._clock() - self._loaded_at > self._refresh_s:
            self._days = await self._store.all()
            self._loaded_at = self._clock()
        if organization_id is None:
            return self.default_days
        return self._days.get(organization_id, self.default_days)

    def changed(self, organization_id: str, days: int) -> None:
        self._days[organization_id] = days


async def record_events(events: Sequence[Event], store: EventStore, retention: RetentionPolicy,
                        now: datetime | None = None) -> int:
    """Write a batch in one round trip. Events already stored (a redelivery) are skipped by
    their key, so a batch written again after a failure half-way is harmless.
    Returns how many events were new."""
    now = now or datetime.now(UTC)
    documents = [event_document(e, await retention.days_for(str(e.organization_id) if e.organization_id else None),
                                now) for e in events]
    return await store.insert_events(documents)

