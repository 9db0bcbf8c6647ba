"""A chatbot cannot point at another organization's flow (security probe, finding 4), on the
running stack: the router asks the flow engine's internal API over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from .tenancy_support import Api, pipeline_router, routed_tenant

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def api(pipeline) -> AsyncIterator[Api]:
    async with pipeline_router(pipeline) as running:
        yield running


async def test_a_chatbot_cannot_borrow_another_organizations_flow(pipeline, api: Api) -> None:
    a = await routed_tenant(api, pipeline)  # org A: a number and a default chatbot on A's own flow
    a_admin = a["admin"]
    _, b_admin = await api.new_organization("victim")
    b_flow = await api.new_flow(b_admin)  # org B publishes a flow through the flow engine's API

    borrowed = await api.call("POST", "/api/v1/chatbots", a_admin, json={
        "number_id": a["number"]["id"], "name": "Borrowed", "flow_id": b_flow})
    moved = await api.call("PATCH", f"/api/v1/chatbots/{a['chatbot']['id']}", a_admin, json={"flow_id": b_flow})
    for refused in (borrowed, moved):
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"] == {"code": "unknown_flow",
                                           "message": f"flow {b_flow} does not exist in your organization"}
    chatbot = (await api.call("GET", f"/api/v1/chatbots/{a['chatbot']['id']}", a_admin)).json()
    assert chatbot["flow_id"] == a["flow_id"]

    own = await api.new_flow(a_admin)
    created = await api.call("POST", "/api/v1/chatbots", a_admin, json={
        "number_id": a["number"]["id"], "name": "Own", "flow_id": own})
    assert created.status_code == 201, created.text
    updated = await api.call("PATCH", f"/api/v1/chatbots/{a['chatbot']['id']}", a_admin, json={"flow_id": own})
    assert updated.status_code == 200 and updated.json()["flow_id"] == own


async def test_the_flow_engines_internal_api_needs_the_token_and_is_not_published(pipeline, api: Api) -> None:
    org_id, admin = await api.new_organization("internal")
    flow_id = await api.new_flow(admin)
    path = f"/internal/v1/organizations/{org_id}/flows/{flow_id}"
    token = api.settings.internal_token.get_secret_value()
    async with httpx.AsyncClient(base_url=pipeline.url("flow-engine"), timeout=30.0) as flow_engine:
        assert (await flow_engine.get(path)).status_code == 401
        assert (await flow_engine.get(path, headers={"X-Internal-Token": "wrong"})).status_code == 401
        found = await flow_engine.get(path, headers={"X-Internal-Token": token})
        assert found.status_code == 200 and found.json() == {"flow_id": flow_id, "organization_id": org_id}
        schema = (await flow_engine.get("/api/v1/openapi.json")).json()
    assert not [p for p in schema["paths"] if p.startswith("/internal")]
