"""In-memory stand-ins the gateway's unit tests share."""

from __future__ import annotations

from collections.abc import Sequence


class RecordingSink:
    """An EventSink that keeps what it was given, or fails like an unreachable Kafka."""

    def __init__(self) -> None:
        self.published: list[tuple] = []
        self.failing = False

    async def publish_all(self, items: Sequence[tuple]) -> None:
        if self.failing:
            raise ConnectionError("kafka down")
        self.published.extend(items)

    @property
    def events(self) -> list:
        return [event for _, event, _ in self.published]
