"""Deduplication inside one process: unit tests and benchmarks. It does not span replicas."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from ..service.ingest import Claim


class InMemoryDedupStore:
    def __init__(self, clock: Callable[[], float], lease_s: float = 30.0) -> None:
        self._clock = clock
        self._lease_s = lease_s
        self._published: set[str] = set()
        self._pending: dict[str, float] = {}  # key -> when claimed

    async def claim(self, keys: Sequence[str]) -> Claim:
        now = self._clock()
        claimed, in_flight = set(), set()
        for key in keys:
            if key in self._published:
                continue
            since = self._pending.get(key)
            if since is not None and now - since < self._lease_s:
                in_flight.add(key)
                continue
            self._pending[key] = now
            claimed.add(key)
        return Claim(claimed=claimed, in_flight=in_flight)

    async def confirm(self, keys: Collection[str]) -> None:
        for key in keys:
            self._pending.pop(key, None)
            self._published.add(key)

    async def release(self, keys: Collection[str]) -> None:
        for key in keys:
            self._pending.pop(key, None)

    async def renew(self, keys: Collection[str]) -> None:
        now = self._clock()
        for key in keys:
            if key in self._pending:
                self._pending[key] = now
