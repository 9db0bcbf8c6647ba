"""The internal API the router asks before a chatbot may point at a flow."""

from __future__ import annotations

from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI

from pytake_flow_engine.entrypoints.internal import internal_router
from pytake_flow_engine.service.flows import FlowNotFound

ORG_A, ORG_B, FLOW_A = uuid4(), uuid4(), uuid4()


class FakeFlows:
    async def get(self, organization_id: UUID, flow_id: UUID) -> object:
        if (organization_id, flow_id) != (ORG_A, FLOW_A):
            raise FlowNotFound(flow_id)
        return object()


def client(token: str | None) -> httpx.AsyncClient:
    app = FastAPI()
    app.include_router(internal_router(FakeFlows(), token))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://flow-engine")


async def test_a_live_flow_of_the_organization_is_found_and_no_other() -> None:
    async with client("secret") as http:
        headers = {"X-Internal-Token": "secret"}
        found = await http.get(f"/internal/v1/organizations/{ORG_A}/flows/{FLOW_A}", headers=headers)
        elsewhere = await http.get(f"/internal/v1/organizations/{ORG_B}/flows/{FLOW_A}", headers=headers)
    assert found.status_code == 200
    assert found.json() == {"flow_id": str(FLOW_A), "organization_id": str(ORG_A)}
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(("configured", "sent"), [("secret", None), ("secret", "wrong"), (None, "anything")])
async def test_only_callers_with_the_internal_token_are_answered(configured: str | None, sent: str | None) -> None:
    async with client(configured) as http:
        headers = {"X-Internal-Token": sent} if sent else {}
        response = await http.get(f"/internal/v1/organizations/{ORG_A}/flows/{FLOW_A}", headers=headers)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


def test_the_internal_api_is_not_in_the_openapi_document() -> None:
    app = FastAPI()
    app.include_router(internal_router(FakeFlows(), "secret"))  # type: ignore[arg-type]
    assert not [path for path in app.openapi()["paths"] if path.startswith("/internal")]
