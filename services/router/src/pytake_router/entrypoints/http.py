"""Internal HTTP API for other PyTake services (never exposed through the ingress):
a number's access token for the sender, a Meta app's webhook secrets for the gateway."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from uuid import UUID

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse

from pytake_plumbing.errors import error_body

from ..service.ports import Secrets, UnitOfWork
from ..service.registry import number_credentials, webhook_credentials
from ..service.schemas import CredentialsResponse, WebhookCredentialsResponse


def internal_router(uow_factory: Callable[[], UnitOfWork], box: Secrets, internal_token: str) -> APIRouter:
    router = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)
    expected = internal_token.encode()

    def authorized(token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token.encode(), expected)  # type: ignore[union-attr]

    def unauthorized() -> JSONResponse:
        return JSONResponse(error_body("unauthorized", "internal token required"), 401)

    @router.get("/organizations/{organization_id}/numbers/{phone_number_id}/credentials", response_model=None)
    async def credentials(
        organization_id: UUID, phone_number_id: str, x_internal_token: str | None = Header(default=None)
    ) -> CredentialsResponse | JSONResponse:
        if not authorized(x_internal_token):
            return unauthorized()
        found = None if not phone_number_id.isdigit() else await number_credentials(uow_factory(), box, organization_id, phone_number_id)
        if found is None:
            return JSONResponse(error_body("not_found", "no such active number"), 404)
        return CredentialsResponse(organization_id=found.organization_id, phone_number_id=found.phone_number_id,
                                   access_token=found.access_token)

    @router.get("/meta-apps/{meta_app_id}/webhook-credentials", response_model=None)
    async def meta_app_webhook_credentials(
        meta_app_id: str, x_internal_token: str | None = Header(default=None)
    ) -> WebhookCredentialsResponse | JSONResponse:
        if not authorized(x_internal_token):
            return unauthorized()
        # Meta app ids are digits; anything else cannot match (and never reaches the database).
        found = await webhook_credentials(uow_factory(), box, meta_app_id) if meta_app_id.isdigit() else None
        if found is None:
            return JSONResponse(error_body("not_found", "no live, active number of this Meta app"), 404)
        return WebhookCredentialsResponse(meta_app_id=found.meta_app_id, app_secrets=found.app_secrets,
                                          verify_tokens=found.verify_tokens, phone_number_ids=found.phone_number_ids)

    return router
