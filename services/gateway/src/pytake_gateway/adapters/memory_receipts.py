"""Receipts inside one process: unit tests and benchmarks. They do not span replicas."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager


class InMemoryReceiptStore:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    @asynccontextmanager
    async def record(self, keys: Sequence[str]) -> AsyncIterator[set[str]]:
        first = {key for key in keys if key not in self.seen}
        yield set(first)
        self.seen |= first  # only once the block succeeded, as a commit
