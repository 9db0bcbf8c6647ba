"""The audit log in MongoDB: one document per event, keyed by event_id (idempotent)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient

from pytake_contracts import Event

EVENTS = "events"


class AuditStore:
    def __init__(self, client: AsyncMongoClient, database: str) -> None:
        self._collection = client[database][EVENTS]

    async def ensure_indexes(self) -> None:
        await self._collection.create_index([("organization_id", ASCENDING), ("occurred_at", DESCENDING)])
        await self._collection.create_index([("organization_id", ASCENDING), ("correlation_id", ASCENDING)])
        await self._collection.create_index([("organization_id", ASCENDING), ("event_type", ASCENDING)])

    async def record(self, event: Event) -> None:
        document: dict[str, Any] = event.model_dump(mode="json")
        document["_id"] = document.pop("event_id")
        document["occurred_at"] = event.occurred_at
        document["recorded_at"] = datetime.now(UTC)
        # $setOnInsert makes a redelivered event a no-op instead of a duplicate.
        await self._collection.update_one({"_id": document["_id"]}, {"$setOnInsert": document}, upsert=True)
