"""Whether a flow is a live flow of an organization, from the flow engine's internal API
(`GET {FLOW_ENGINE_INTERNAL_URL}/internal/v1/organizations/{organization_id}/flows/{flow_id}`)."""

from __future__ import annotations

from uuid import UUID

import httpx
from pydantic import BaseModel, ValidationError

from pytake_plumbing.logs import get_logger

from ..domain.errors import Unavailable

log = get_logger(__name__)
UNAVAILABLE = "flows cannot be checked right now; try again later"


class _FlowReference(BaseModel):
    flow_id: UUID
    organization_id: UUID


class HttpFlowDirectory:
    def __init__(self, base_url: str, internal_token: str, *, timeout_s: float = 5.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout_s, transport=transport,
                                         headers={"X-Internal-Token": internal_token})

    async def flow_exists(self, organization_id: UUID, flow_id: UUID) -> bool:
        try:
            response = await self._client.get(f"/internal/v1/organizations/{organization_id}/flows/{flow_id}")
        except httpx.HTTPError as exc:
            log.warning("flow_engine_unreachable", error=type(exc).__name__)
            raise Unavailable(UNAVAILABLE) from exc
        if response.status_code == 404:
            return False
        if response.status_code != 200:  # a wrong token, a flow engine in trouble: no answer
            log.warning("flow_engine_refused", status=response.status_code)
            raise Unavailable(UNAVAILABLE)
        try:
            found = _FlowReference.model_validate_json(response.content)
        except ValidationError as exc:
            raise Unavailable(UNAVAILABLE) from exc
        # Only an answer about this very flow of this very organization counts.
        return found.flow_id == flow_id and found.organization_id == organization_id

    async def close(self) -> None:
        await self._client.aclose()
