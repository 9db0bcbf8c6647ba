"""The audit's query API under /api/v1/audit: JWT, scoped to the caller's organization."""


from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query

from pytake_plumbing.auth import AuthSettings, Principal, RevocationCheck, Role, principal_dependency, require_roles
from pytake_plumbing.bounds import NO_NUL
from pytake_plumbing.errors import error_responses

from ..domain.views import (
    ConversationTimeline,
    DeliveryRates,
    DeliveryStatus,
    Funnel,
    FunnelQuery,
    MessagePage,
    MessageSearch,
    MessagesPerDay,
    RetentionResponse,
    RetentionUpdate,
    TimeRange,
)
from ..service.queries import AuditQueryService, RetentionService

# What the operations may answer besides their success (the request guard's 413 and 422 included).
READ = error_responses(401, 422)
READ_ONE = error_responses(401, 404, 422)
WRITE = error_responses(400, 401, 403, 413, 422)


def build_router(queries: AuditQueryService, retention: RetentionService, auth: AuthSettings,
                 revocations: RevocationCheck | None = None) -> APIRouter:
    current = principal_dependency(auth, revocations)
    Reader = Annotated[Principal, Depends(current)]
    Admin = Annotated[Principal, Depends(require_roles(current, Role.ORG_ADMIN))]
    Wamid = Annotated[str, Path(min_length=1, max_length=200, pattern=NO_NUL)]
    router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

    @router.get("/conversations/{conversation_id}/timeline", response_model=ConversationTimeline,
                responses=READ_ONE)
    async def conversation_timeline(conversation_id: UUID, who: Reader) -> ConversationTimeline:
        """Everything that happened in a conversation, oldest first: inbound messages, flow steps,
        outbound requests, sends and delivery statuses."""
        return await queries.timeline(who.organization_id, conversation_id)

    @router.get("/messages", response_model=MessagePage, responses=READ)
    async def search_messages(who: Reader, search: Annotated[MessageSearch, Query()]) -> MessagePage:
        """Inbound and outbound messages, newest first, by contact, time range, direction and type."""
        return await queries.search(who.organization_id, search)

    @router.get("/messages/{wamid}/status", response_model=DeliveryStatus, responses=READ_ONE)
    async def message_status(wamid: Wamid, who: Reader) -> DeliveryStatus:
        return await queries.delivery(who.organization_id, wamid)

    @router.get("/analytics/messages-per-day", response_model=MessagesPerDay, responses=READ)
    async def messages_per_day(who: Reader, window: Annotated[TimeRange, Query()]) -> MessagesPerDay:
        """Inbound messages routed and outbound messages sent, per UTC day."""
        return await queries.messages_per_day(who.organization_id, window)

    @router.get("/analytics/delivery-rates", response_model=DeliveryRates, responses=READ)
    async def delivery_rates(who: Reader, window: Annotated[TimeRange, Query()]) -> DeliveryRates:
        return await queries.delivery_rates(who.organization_id, window)

    @router.get("/analytics/funnel", response_model=Funnel, responses=READ)
    async def funnel(who: Reader, query: Annotated[FunnelQuery, Query()]) -> Funnel:
        """How many of a flow's conversations reached each node, and where they are now."""
        return await queries.funnel(who.organization_id, query)

    @router.get("/retention", response_model=RetentionResponse, responses=READ)
    async def get_retention(who: Reader) -> RetentionResponse:
        return await retention.get(who.organization_id)

    @router.put("/retention", response_model=RetentionResponse, responses=WRITE)
    async def put_retention(body: RetentionUpdate, who: Admin) -> RetentionResponse:
        """Days audit documents are kept; applies to documents written from now on."""
        return await retention.put(who.organization_id, body.days)

    return router
