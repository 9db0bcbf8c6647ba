"""Use cases of the query API; every one is scoped to the caller's organization."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

from pytake_plumbing.errors import ApiError

from ..domain.documents import INBOUND, OUTBOUND, SENT_TYPE, Delivery, fold_conversations, fold_deliveries
from ..domain.views import (
    ConversationTimeline,
    DayCount,
    DeliveryRates,
    DeliveryStatus,
    Funnel,
    FunnelNode,
    FunnelQuery,
    MessageItem,
    MessagePage,
    MessageSearch,
    MessagesPerDay,
    RetentionResponse,
    TimelineEntry,
    TimeRange,
)
from .record import RetentionPolicy

INBOUND_TYPE = "message.inbound_routed"


class QueryStore(Protocol):
    async def events_of_conversation(self, org: str, conversation_id: str) -> list[dict[str, Any]]: ...
    async def events_linked(self, org: str, contact_key: str, correlation_ids: list[str],
                            wamids: list[str]) -> list[dict[str, Any]]: ...
    async def search_messages(self, org: str, criteria: dict[str, Any], limit: int,
                              offset: int) -> tuple[list[dict[str, Any]], int]: ...
    async def sent_for_requests(self, org: str, request_ids: list[str]) -> list[dict[str, Any]]: ...
    async def delivery_events(self, org: str, wamids: list[str]) -> list[dict[str, Any]]: ...
    async def delivery_events_between(self, org: str, since: datetime, until: datetime) -> list[dict[str, Any]]: ...
    async def conversation_events(self, org: str, flow_id: str, since: datetime,
                                  until: datetime) -> list[dict[str, Any]]: ...
    async def send_failures(self, org: str, request_ids: list[str]) -> set[str]: ...
    async def count_per_day(self, org: str, event_types: list[str], since: datetime,
                            until: datetime) -> list[tuple[str, str, int]]: ...


class RetentionRepository(Protocol):
    async def get(self, organization_id: str) -> dict[str, Any] | None: ...
    async def put(self, organization_id: str, days: int, now: datetime) -> dict[str, Any]: ...


class AuditQueryService:
    def __init__(self, store: QueryStore) -> None:
        self._store = store

    async def timeline(self, organization_id: UUID, conversation_id: UUID) -> ConversationTimeline:
        org = str(organization_id)
        own = await self._store.events_of_conversation(org, str(conversation_id))
        if not own:
            raise ApiError(404, "not_found", "no such conversation")
        contact_key = next((d["contact_key"] for d in own if d.get("contact_key")), "")
        correlations = sorted({d["correlation_id"] for d in own})
        wamids = sorted({d["wamid"] for d in own if d.get("event_type") == SENT_TYPE and d.get("wamid")})
        linked = await self._store.events_linked(org, contact_key, correlations, wamids)
        documents = {d["_id"]: d for d in [*own, *linked]}
        ordered = sorted(documents.values(), key=lambda d: (d["occurred_at"], d["_id"]))
        return ConversationTimeline(conversation_id=conversation_id, entries=[_entry(d) for d in ordered])

    async def search(self, organization_id: UUID, search: MessageSearch) -> MessagePage:
        org = str(organization_id)
        since, until = search.bounds()
        criteria: dict[str, Any] = {
            "direction": search.direction or {"$in": [INBOUND, OUTBOUND]},
            "occurred_at": {"$gte": since, "$lt": until},
        }
        if search.contact:
            contact = search.contact
            criteria["contact_key"] = {"$in": [contact, f"p:{contact}", f"u:{contact}"]}
        if search.type:
            criteria["message_type"] = search.type
        documents, total = await self._store.search_messages(org, criteria, search.limit, search.offset)
        requests = [d["_id"] for d in documents if d.get("direction") == OUTBOUND]
        wamid_of_request = {d["payload"]["request_id"]: d["wamid"]
                            for d in await self._store.sent_for_requests(org, requests)}
        folded = fold_deliveries(await self._store.delivery_events(org, sorted(set(wamid_of_request.values()))))
        deliveries = {request: folded[wamid] for request, wamid in wamid_of_request.items() if wamid in folded}
        failures = await self._store.send_failures(org, requests)
        items = [_message(d, deliveries.get(d["_id"]), d["_id"] in failures) for d in documents]
        return MessagePage(items=items, total=total, limit=search.limit, offset=search.offset)

    async def delivery(self, organization_id: UUID, wamid: str) -> DeliveryStatus:
        delivery = fold_deliveries(await self._store.delivery_events(str(organization_id), [wamid])).get(wamid)
        if delivery is None or delivery.status is None:
            raise ApiError(404, "not_found", "no such message")
        return DeliveryStatus(
            wamid=wamid, status=delivery.status, at=delivery.at, request_id=delivery.request_id,
            conversation_id=delivery.conversation_id, contact_key=delivery.contact_key, errors=delivery.errors)

    async def messages_per_day(self, organization_id: UUID, window: TimeRange) -> MessagesPerDay:
        since, until = window.bounds()
        counts: dict[str, dict[str, int]] = defaultdict(lambda: {INBOUND_TYPE: 0, SENT_TYPE: 0})
        for day, event_type, count in await self._store.count_per_day(
                str(organization_id), [INBOUND_TYPE, SENT_TYPE], since, until):
            counts[day][event_type] += count
        days = [DayCount(day=day, inbound=c[INBOUND_TYPE], outbound=c[SENT_TYPE]) for day, c in sorted(counts.items())]
        return MessagesPerDay(since=since, until=until, days=days)

    async def delivery_rates(self, organization_id: UUID, window: TimeRange) -> DeliveryRates:
        """Over the messages with a send or status event in the window."""
        since, until = window.bounds()
        deliveries = [d for d in fold_deliveries(
            await self._store.delivery_events_between(str(organization_id), since, until)).values() if d.status]
        sent = len(deliveries)
        delivered = sum(1 for d in deliveries if d.delivered)
        read = sum(1 for d in deliveries if "read" in d.at)
        failed = sum(1 for d in deliveries if d.status == "failed")
        return DeliveryRates(since=since, until=until, sent=sent, delivered=delivered, read=read, failed=failed,
                             delivery_rate=delivered / sent if sent else 0.0, read_rate=read / sent if sent else 0.0)

    async def funnel(self, organization_id: UUID, query: FunnelQuery) -> Funnel:
        """Over the flow's conversations with events in the window."""
        since, until = query.bounds()
        paths = fold_conversations(
            await self._store.conversation_events(str(organization_id), str(query.flow_id), since, until))
        reached: dict[str, int] = defaultdict(int)
        stopped: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for path in paths.values():
            for node in path.reached:
                reached[node] += 1
            if path.node_id is not None:
                stopped[path.node_id][path.status or "unknown"] += 1
        nodes = [FunnelNode(node_id=node, reached=reached.get(node, 0), stopped=sum(stopped[node].values()),
                            stopped_by_status=dict(stopped[node]))
                 for node in {*reached, *stopped}]
        nodes.sort(key=lambda n: (-n.reached, n.node_id))
        return Funnel(flow_id=query.flow_id, since=since, until=until, conversations=len(paths), nodes=nodes)


class RetentionService:
    def __init__(self, repository: RetentionRepository, policy: RetentionPolicy) -> None:
        self._repository = repository
        self._policy = policy

    async def get(self, organization_id: UUID) -> RetentionResponse:
        found = await self._repository.get(str(organization_id))
        if found is None:
            return RetentionResponse(organization_id=organization_id, days=self._policy.default_days, default=True)
        return RetentionResponse(organization_id=organization_id, days=found["days"], default=False)

    async def put(self, organization_id: UUID, days: int) -> RetentionResponse:
        """Applies to documents written from now on; older ones keep the expiry they were written with."""
        await self._repository.put(str(organization_id), days, datetime.now(UTC))
        self._policy.changed(str(organization_id), days)
        return RetentionResponse(organization_id=organization_id, days=days, default=False)


def _entry(document: dict[str, Any]) -> TimelineEntry:
    return TimelineEntry(
        event_id=str(document["_id"]), event_type=document["event_type"], occurred_at=document["occurred_at"],
        producer=document["producer"], correlation_id=document["correlation_id"],
        direction=document.get("direction"), message_type=document.get("message_type"),
        contact_key=document.get("contact_key"), wamid=document.get("wamid"), payload=document.get("payload") or {})


def _message(document: dict[str, Any], delivery: Delivery | None, send_failed: bool) -> MessageItem:
    payload = document.get("payload") or {}
    message = payload.get("message") or {}
    outbound = document["direction"] == OUTBOUND
    status = None
    if outbound:
        status = delivery.status if delivery else ("send_failed" if send_failed else "requested")
    return MessageItem(
        event_id=str(document["_id"]), occurred_at=document["occurred_at"], direction=document["direction"],
        type=document.get("message_type"), contact_key=document.get("contact_key"),
        conversation_id=document.get("conversation_id"),
        wamid=(delivery.wamid if delivery else None) if outbound else document.get("wamid"),
        text=message.get("text") or message.get("body") or message.get("name"), status=status)
