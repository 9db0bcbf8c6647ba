"""Internal HTTP API for other PyTake services (never exposed through the ingress; header
`X-Internal-Token: $PYTAKE_INTERNAL_TOKEN`): whether a flow is a live flow of an organization,
which the router asks before a chatbot may point at it."""

from __future__ import annotations

import hmac
from uuid import UUID

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from pytake_plumbing.errors import error_body

from ..service.flows import FlowNotFound, FlowService


class FlowReferenceResponse(BaseModel):
    flow_id: UUID
    organization_id: UUID


def internal_router(flows: FlowService, internal_token: str | None) -> APIRouter:
    router = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)
    expected = internal_token.encode() if internal_token else None

    def authorized(token: str | None) -> bool:
        return expected is not None and token is not None and hmac.compare_digest(token.encode(), expected)

    @router.get("/organizations/{organization_id}/flows/{flow_id}", response_model=None)
    async def flow_reference(
        organization_id: UUID, flow_id: UUID, x_internal_token: str | None = Header(default=None)
    ) -> FlowReferenceResponse | JSONResponse:
        if not authorized(x_internal_token):
            return JSONResponse(error_body("unauthorized", "internal token required"), 401)
        try:
            await flows.get(organization_id, flow_id)  # live flows of this organization only
        except FlowNotFound:
            return JSONResponse(error_body("not_found", "no such live flow in this organization"), 404)
        return FlowReferenceResponse(flow_id=flow_id, organization_id=organization_id)

    return router
