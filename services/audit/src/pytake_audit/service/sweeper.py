"""Retention where the server has no TTL monitor (FerretDB): delete expired documents now and then.

On MongoDB the TTL index on `expire_at` does this work and the sweeper is not started."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Protocol

from pytake_plumbing.logs import get_logger

log = get_logger(__name__)


class ExpiringStore(Protocol):
    async def delete_expired(self, now: datetime) -> dict[str, int]: ...


class ExpirySweeper:
    def __init__(self, store: ExpiringStore, interval_s: float) -> None:
        self._store = store
        self._interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def sweep_once(self, now: datetime | None = None) -> dict[str, int]:
        deleted = await self._store.delete_expired(now or datetime.now(UTC))
        if any(deleted.values()):
            log.info("expired_documents_deleted", **deleted)
        return deleted

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception as exc:  # the store may be down: try again next round
                log.warning("sweep_failed", error=repr(exc)[:300])
            await asyncio.sleep(self._interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-expiry-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
