"""Internal HTTP API: a number's Meta credentials, for the sender only."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from uuid import UUID

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from ..adapters.crypto import SecretBox
from ..service.registry import UnitOfWork, number_credentials


class CredentialsResponse(BaseModel):
    organization_id: UUID
    phone_number_id: str
    access_token: str


def internal_router(uow_factory: Callable[[], UnitOfWork], box: SecretBox, internal_token: str) -> APIRouter:
    router = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)

    @router.get("/organizations/{organization_id}/numbers/{phone_number_id}/credentials", response_model=None)
    async def credentials(
        organization_id: UUID, phone_number_id: str, x_internal_token: str | None = Header(default=None)
    ) -> CredentialsResponse | JSONResponse:
        if not x_internal_token or not hmac.compare_digest(x_internal_token.encode(), internal_token.encode()):
            return JSONResponse({"error": {"code": "unauthorized", "message": "internal token required"}}, 401)
        found = await number_credentials(uow_factory(), box, organization_id, phone_number_id)
        if found is None:
            return JSONResponse({"error": {"code": "not_found", "message": "no such active number"}}, 404)
        return CredentialsResponse(organization_id=found.organization_id, phone_number_id=found.phone_number_id,
                                   access_token=found.access_token)

    return router
