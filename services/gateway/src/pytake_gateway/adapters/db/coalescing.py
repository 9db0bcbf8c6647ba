"""Many concurrent requests' keys, few database round trips.

Each webhook needs its dedup keys claimed (and later confirmed) before it is answered.
One round trip per request would make PostgreSQL's latency and asyncpg's per-query cost
the gateway's ceiling; instead, keys submitted while earlier batches are in flight wait
together and go as one statement (group commit). An idle gateway still sends at once:
a batch waits only for a free slot, never for a timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Key = TypeVar("Key", str, tuple[str, str])
Answer = TypeVar("Answer")


class KeyBatcher(Generic[Key, Answer]):
    """Runs `flush(keys)` over the keys of every waiting caller, at most `max_in_flight` at once.

    `flush` gets distinct keys and returns one answer per key it was given (or raises,
    and every caller of that batch gets the error). A key submitted while it is already
    waiting shares that answer: the caller decides (`is_waiting`) whether that is right.
    """

    def __init__(self, flush: Callable[[list[Key]], Awaitable[dict[Key, Answer]]], *, max_in_flight: int,
                 max_batch: int = 2000) -> None:
        self._flush = flush
        self._slots = asyncio.Semaphore(max_in_flight)
        self._max_batch = max_batch
        self._waiting: dict[Key, asyncio.Future[Answer]] = {}
        self._drains: set[asyncio.Task[None]] = set()

    def is_waiting(self, key: Key) -> bool:
        return key in self._waiting

    async def submit(self, keys: Sequence[Key]) -> dict[Key, Answer]:
        """The answer for each key; a key already waiting in the batch shares that key's answer."""
        futures = {key: self._waiting.get(key) or self._enqueue(key) for key in keys}
        return {key: await future for key, future in futures.items()}

    def _enqueue(self, key: Key) -> asyncio.Future[Answer]:
        future = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        if len(self._waiting) == 1:
            self._start_drain()
        return future

    def _start_drain(self) -> None:
        task = asyncio.get_running_loop().create_task(self._drain())
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _drain(self) -> None:
        async with self._slots:
            # Everything that arrived while this task waited for a slot goes in one batch.
            batch = dict(list(self._waiting.items())[: self._max_batch])
            if not batch:
                return
            for key in batch:
                del self._waiting[key]
            if self._waiting:
                self._start_drain()
            try:
                answers = await self._flush(sorted(batch))
            except BaseException as exc:
                for future in batch.values():
                    if not future.done():
                        future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                return
            for key, future in batch.items():
                if not future.done():
                    future.set_result(answers[key])
