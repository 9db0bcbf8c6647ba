"""The audit log in MongoDB (PyMongo's async client).

Written so that it runs the same on MongoDB and on FerretDB: every `$group` has one
accumulator (`$sum`), no `$lookup`/`$facet`/`$dateToString`, no transactions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, OperationFailure

from pytake_plumbing.logs import get_logger

from ..domain.documents import CONVERSATION_TYPES, DELIVERY_TYPES, EVENTS, SENT_TYPE

log = get_logger(__name__)

RETENTION = "retention"
EXPIRING = (EVENTS,)

DUPLICATE_KEY = 11000
# What a server answers for an index option it does not implement (FerretDB: 238 NotImplemented).
UNSUPPORTED_INDEX_CODES = {238, 67, 197}

ORG = ("organization_id", ASCENDING)

# FerretDB over PostgreSQL reports its backend's failures as OperationFailure with the SQLSTATE in the
# message. Connection exceptions (08), an operator or crash shutdown (57P01-57P03) and exhausted
# resources (53) mean the database is away: an outage to wait out, not a bad document.
BACKEND_AWAY = re.compile(r"SQLSTATE (08|57P0|53)|failed to connect")
# ... and a string holding U+0000, which PostgreSQL's jsonb cannot store (MongoDB can).
NUL_UNSUPPORTED = "SQLSTATE 22P05"
NUL_STAND_IN = "\u2400"  # ␀, so the audit still shows where the NUL was


class DatabaseAway(ConnectionError):
    """The audit database is unreachable behind a reachable server; retried like any outage."""


def _as_outage(exc: OperationFailure) -> Exception:
    return DatabaseAway(str(exc)[:500]) if BACKEND_AWAY.search(str(exc)) else exc


def without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", NUL_STAND_IN)
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value

# Few indexes on purpose: each one costs on every insert (on FerretDB, a lot). The organization
# comes first in each, as every query filters on it.
INDEXES: dict[str, list[IndexModel]] = {
    EVENTS: [
        IndexModel([ORG, ("occurred_at", DESCENDING)]),  # time ranges: search, per-day, rates, funnel
        IndexModel([ORG, ("contact_key", ASCENDING), ("occurred_at", DESCENDING)]),  # search by contact
        IndexModel([ORG, ("conversation_id", ASCENDING)]),  # timeline
        IndexModel([ORG, ("wamid", ASCENDING)]),  # a message's status
    ],
}
DELIVERY_FIELDS = {"event_type": 1, "wamid": 1, "occurred_at": 1, "contact_key": 1, "payload.status": 1,
                   "payload.timestamp": 1, "payload.errors": 1, "payload.request_id": 1,
                   "payload.conversation_id": 1}
PATH_FIELDS = {"conversation_id": 1, "occurred_at": 1, "payload.node_id": 1, "payload.visited": 1,
               "payload.status": 1}


def ttl_index() -> IndexModel:
    """Retention: MongoDB deletes a document once its own `expire_at` has passed (expireAfterSeconds=0)."""
    return IndexModel([("expire_at", ASCENDING)], name="expire_at_ttl", expireAfterSeconds=0)


def plain_expiry_index() -> IndexModel:
    """Where TTL indexes are not implemented, the sweeper still finds expired documents fast."""
    return IndexModel([("expire_at", ASCENDING)], name="expire_at")


class AuditStore:
    """Writes: each event once (insert-only; FerretDB's updates scan the whole collection)."""

    def __init__(self, client: AsyncMongoClient, database: str) -> None:
        self._db = client[database]
        self.ttl_supported: bool | None = None

    def collection(self, name: str) -> AsyncCollection:
        return self._db[name]

    async def ensure_indexes(self) -> None:
        for name, models in INDEXES.items():
            await self._create_missing(name, models)
        self.ttl_supported = await self._ensure_ttl_indexes()

    async def _create_missing(self, collection: str, models: list[IndexModel]) -> None:
        """Only the indexes not there yet: on a restart, asking FerretDB (v1.24, PostgreSQL backend) to
        create several indexes that all exist already makes it drop the connection."""
        existing = {index["name"] async for index in await self._db[collection].list_indexes()}
        missing = [model for model in models if model.document["name"] not in existing]
        if missing:
            await self._db[collection].create_indexes(missing)

    async def _ensure_ttl_indexes(self) -> bool:
        try:
            for name in EXPIRING:
                await self._create_missing(name, [ttl_index()])
            return True
        except OperationFailure as exc:
            if exc.code not in UNSUPPORTED_INDEX_CODES:
                raise
            log.warning("ttl_index_unsupported", error=str(exc)[:300],
                        consequence="expired audit documents are deleted by the audit's own sweeper")
            for name in EXPIRING:
                await self._create_missing(name, [plain_expiry_index()])
            return False

    async def insert_events(self, documents: Sequence[dict[str, Any]]) -> int:
        """Insert what is new; an event already stored (same `_id`) is a redelivery and is skipped.

        Returns how many documents were new."""
        if not documents:
            return 0
        try:
            return await self._insert_new(documents)
        except OperationFailure as exc:
            if NUL_UNSUPPORTED not in str(exc):
                raise _as_outage(exc) from exc
        # Rare (the gateway refuses NULs; a dead letter's original may hold one): only then is every
        # string walked, so the common path pays nothing.
        try:
            return await self._insert_new([without_nul(document) for document in documents])
        except OperationFailure as exc:
            raise _as_outage(exc) from exc

    async def _insert_new(self, documents: Sequence[dict[str, Any]]) -> int:
        try:
            result = await self._db[EVENTS].insert_many(list(documents), ordered=False)
            return len(result.inserted_ids)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(error.get("code") != DUPLICATE_KEY for error in errors):
                raise
            return int(exc.details.get("nInserted", len(documents) - len(errors)))

    async def delete_expired(self, now: datetime) -> dict[str, int]:
        """The sweeper's work where the server has no TTL monitor."""
        deleted = {}
        for name in EXPIRING:
            result = await self._db[name].delete_many({"expire_at": {"$lt": now}})
            deleted[name] = result.deleted_count
        return deleted


class RetentionRepository:
    """Per-organization retention in days; organizations without a row use the default."""

    def __init__(self, client: AsyncMongoClient, database: str) -> None:
        self._collection = client[database][RETENTION]

    async def all(self) -> dict[str, int]:
        return {doc["_id"]: int(doc["days"]) async for doc in self._collection.find({}, {"days": 1})}

    async def get(self, organization_id: str) -> dict[str, Any] | None:
        return await self._collection.find_one({"_id": organization_id})

    async def put(self, organization_id: str, days: int, now: datetime) -> dict[str, Any]:
        await self._collection.update_one(
            {"_id": organization_id},
            {"$set": {"days": days, "updated_at": now}, "$setOnInsert": {"organization_id": organization_id,
                                                                         "created_at": now}},
            upsert=True)
        found = await self.get(organization_id)
        assert found is not None
        return found


class AuditQueries:
    """Reads; every query is filtered on the caller's organization."""

    def __init__(self, client: AsyncMongoClient, database: str) -> None:
        self._events = client[database][EVENTS]

    async def events_of_conversation(self, org: str, conversation_id: str) -> list[dict[str, Any]]:
        cursor = self._events.find({"organization_id": org, "conversation_id": conversation_id})
        return [doc async for doc in cursor]

    async def events_linked(self, org: str, contact_key: str, correlation_ids: list[str],
                            wamids: list[str]) -> list[dict[str, Any]]:
        """The inbound messages (same webhook, same contact) and statuses (same wamids) of a conversation."""
        branches: list[dict[str, Any]] = []
        if correlation_ids:
            branches.append({"contact_key": contact_key, "correlation_id": {"$in": correlation_ids}})
        if wamids:
            branches.append({"wamid": {"$in": wamids}})
        if not branches:
            return []
        return [doc async for doc in self._events.find({"organization_id": org, "$or": branches})]

    async def search_messages(self, org: str, criteria: dict[str, Any], limit: int,
                              offset: int) -> tuple[list[dict[str, Any]], int]:
        query = {"organization_id": org, **criteria}
        total = await self._events.count_documents(query)
        cursor = self._events.find(query).sort([("occurred_at", DESCENDING), ("_id", DESCENDING)]) \
            .skip(offset).limit(limit)
        return [doc async for doc in cursor], total

    async def sent_for_requests(self, org: str, request_ids: list[str]) -> list[dict[str, Any]]:
        if not request_ids:
            return []
        cursor = self._events.find({"organization_id": org, "event_type": SENT_TYPE,
                                    "payload.request_id": {"$in": request_ids}}, DELIVERY_FIELDS)
        return [doc async for doc in cursor]

    async def delivery_events(self, org: str, wamids: list[str]) -> list[dict[str, Any]]:
        if not wamids:
            return []
        cursor = self._events.find({"organization_id": org, "event_type": {"$in": DELIVERY_TYPES},
                                    "wamid": {"$in": wamids}}, DELIVERY_FIELDS)
        return [doc async for doc in cursor]

    async def delivery_events_between(self, org: str, since: datetime, until: datetime) -> list[dict[str, Any]]:
        cursor = self._events.find({"organization_id": org, "event_type": {"$in": DELIVERY_TYPES},
                                    "occurred_at": {"$gte": since, "$lt": until}}, DELIVERY_FIELDS)
        return [doc async for doc in cursor]

    async def conversation_events(self, org: str, flow_id: str, since: datetime,
                                  until: datetime) -> list[dict[str, Any]]:
        cursor = self._events.find({"organization_id": org, "flow_id": flow_id,
                                    "event_type": {"$in": CONVERSATION_TYPES},
                                    "occurred_at": {"$gte": since, "$lt": until}}, PATH_FIELDS)
        return [doc async for doc in cursor]

    async def send_failures(self, org: str, request_ids: list[str]) -> set[str]:
        """Which of these outbound requests the sender gave up on (message.failed)."""
        if not request_ids:
            return set()
        cursor = self._events.find({"organization_id": org, "event_type": "message.failed",
                                    "payload.request_id": {"$in": request_ids}}, {"payload.request_id": 1})
        return {doc["payload"]["request_id"] async for doc in cursor}

    async def count_per_day(self, org: str, event_types: list[str], since: datetime,
                            until: datetime) -> list[tuple[str, str, int]]:
        """(day, event_type, count); one accumulator per $group, as FerretDB computes only the first."""
        pipeline = [
            {"$match": {"organization_id": org, "event_type": {"$in": event_types},
                        "occurred_at": {"$gte": since, "$lt": until}}},
            {"$group": {"_id": {"day": "$day", "event_type": "$event_type"}, "count": {"$sum": 1}}},
        ]
        cursor = await self._events.aggregate(pipeline)
        return [(doc["_id"]["day"], doc["_id"]["event_type"], int(doc["count"])) async for doc in cursor]
