"""Input the management APIs cannot store is refused with a 4xx and a structured error, never a 500:
NUL characters (PostgreSQL's text and JSONB cannot hold U+0000), numbers outside the columns'
range, oversized offsets, oversized bodies and flows with too many nodes. Each case is a probe
that once answered 500 (or stored a 5 MiB draft) on the running stack."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from pytake_plumbing.auth import AuthSettings, Principal, Role, issue_access_token

from .tenancy_support import Api, pipeline_router

pytestmark = pytest.mark.integration

PG_INT_MAX = 2**31 - 1
FLOW = {"nodes": [{"id": "start", "type": "start", "next": "bye"}, {"id": "bye", "type": "message", "text": "Bye",
                                                                      "next": "end"}, {"id": "end", "type": "end"}]}


def _token(stack: Any, organization_id: UUID, role: Role = Role.ORG_ADMIN) -> str:
    auth = AuthSettings.model_validate({"JWT_SECRET": stack.env["JWT_SECRET"]})
    return issue_access_token(Principal(user_id=uuid4(), organization_id=organization_id, role=role), auth)


def _refused(response: httpx.Response, status: int) -> dict[str, Any]:
    """The structured error of a refused request."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    error = response.json()["error"]
    assert error["code"] and error["message"], error
    return error


@pytest.fixture(scope="module")
async def flow_engine(pipeline) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {_token(pipeline, uuid4())}"}
    async with httpx.AsyncClient(base_url=pipeline.url("flow-engine"), headers=headers, timeout=30.0) as client:
        yield client


@pytest.fixture(scope="module")
async def audit(pipeline) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {_token(pipeline, uuid4())}"}
    async with httpx.AsyncClient(base_url=pipeline.url("audit"), headers=headers, timeout=30.0) as client:
        yield client


@pytest.fixture(scope="module")
async def router(pipeline) -> AsyncIterator[Api]:
    async with pipeline_router(pipeline) as running:
        yield running


@pytest.fixture(scope="module")
async def published_flow(flow_engine) -> str:
    """A flow with version 1 published: the version probes must get past the flow's own lookup."""
    created = await flow_engine.post("/api/v1/flows", json={"name": "limits", "definition": FLOW})
    assert created.status_code == 201, created.text
    flow_id = created.json()["id"]
    published = await flow_engine.post(f"/api/v1/flows/{flow_id}/publish")
    assert published.status_code == 201, published.text
    return str(flow_id)


# --- NUL characters ------------------------------------------------------------------------


async def test_nul_in_a_flow_name_or_definition_is_422(pipeline, flow_engine, published_flow) -> None:
    marker = "probe-" + secrets.token_hex(6)  # must not reach the logs either
    for body in ({"name": f"{marker}\x00"},
                 {"name": "fine", "definition": {"nodes": [{"id": "start", "type": "start", "text": f"{marker}\x00"}]}},
                 {"name": "fine", "definition": {f"{marker}\x00": 1}}):
        _refused(await flow_engine.post("/api/v1/flows", json=body), 422)
        _refused(await flow_engine.patch(f"/api/v1/flows/{published_flow}", json=body), 422)
    for log in pipeline.log_dir.glob("*.log"):
        assert marker not in log.read_text(errors="replace"), f"{log.name} logged the refused input"


async def test_an_escaped_backslash_before_u0000_is_not_a_nul(flow_engine) -> None:
    name = "C:\\u0000dir"  # a backslash, then the text u0000: JSON "C:\\u0000dir"
    raw = json.dumps({"name": name, "definition": {"note": name}})
    assert "\\\\u0000" in raw
    created = await flow_engine.post("/api/v1/flows", content=raw, headers={"Content-Type": "application/json"})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == name and created.json()["definition"] == {"note": name}


async def test_json_postgresql_cannot_store_is_422(flow_engine) -> None:
    for raw in ('{"name": "nan", "definition": {"weight": NaN}}',
                '{"name": "inf", "definition": {"weight": -Infinity}}',
                '{"name": "surrogate \\ud800"}'):
        _refused(await flow_engine.post("/api/v1/flows", content=raw, headers={"Content-Type": "application/json"}),
                 422)


async def test_nul_in_a_query_or_path_is_422(flow_engine, audit) -> None:
    _refused(await flow_engine.get("/api/v1/conversations", params={"status": "a\x00b"}), 422)
    _refused(await flow_engine.get("/api/v1/conversations", params={"contact_key": "\x00"}), 422)
    _refused(await flow_engine.get("/api/v1/conversations?status=a%00b"), 422)
    _refused(await audit.get("/api/v1/audit/messages", params={"contact": "a\x00b"}), 422)
    _refused(await audit.get("/api/v1/audit/messages", params={"type": "text\x00"}), 422)
    _refused(await audit.get("/api/v1/audit/messages/wamid.a%00b/status"), 422)


async def test_nul_in_router_inputs_is_422(router) -> None:
    org_id, admin = await router.new_organization("nul")
    _refused(await router.call("GET", "/api/v1/chatbots?name=a%00b", admin), 422)
    _refused(await router.call("GET", "/api/v1/users?email=a%00b@x.test", admin), 422)
    _refused(await router.call("GET", "/api/v1/numbers?phone_number_id=1%00", admin), 422)
    _refused(await router.call("GET", "/api/v1/numbers?unknown=%00", admin), 422)
    _refused(await router.call("PATCH", f"/api/v1/organizations/{org_id}", await router.platform_token(),
                               json={"name": "a\x00b"}), 422)
    _refused(await router.call("POST", "/api/v1/users", admin, json={
        "email": "nul@nul.test", "name": "Nul", "password": "pass\x00word-long"}), 422)


# --- numbers out of range ------------------------------------------------------------------


async def test_versions_beyond_32_bits_are_422(flow_engine, published_flow) -> None:
    base = f"/api/v1/flows/{published_flow}/versions"
    for version in (PG_INT_MAX + 1, 10**20, 0, -1):
        _refused(await flow_engine.get(f"{base}/{version}"), 422)
        _refused(await flow_engine.post(f"{base}/{version}/simulate", json={"inputs": ["hi"]}), 422)
        _refused(await flow_engine.post(f"{base}/{version}/rollback"), 422)
    # The largest version a column holds is a version that does not exist, not a bad request.
    _refused(await flow_engine.get(f"{base}/{PG_INT_MAX}"), 404)
    _refused(await flow_engine.post(f"{base}/{PG_INT_MAX}/simulate", json={"inputs": ["hi"]}), 404)
    _refused(await flow_engine.post(f"{base}/{PG_INT_MAX}/rollback"), 404)
    assert (await flow_engine.get(f"{base}/1")).status_code == 200


async def test_huge_offsets_are_422(flow_engine, audit, router) -> None:
    for path in ("/api/v1/flows", "/api/v1/conversations"):
        _refused(await flow_engine.get(f"{path}?offset=99999999999999999999"), 422)
        _refused(await flow_engine.get(f"{path}?offset=1000001"), 422)
        assert (await flow_engine.get(f"{path}?offset=1000000")).status_code == 200
    _refused(await audit.get("/api/v1/audit/messages?offset=99999999999999999999"), 422)
    _, admin = await router.new_organization("offset")
    _refused(await router.call("GET", "/api/v1/chatbots?offset=99999999999999999999", admin), 422)


# --- sizes ---------------------------------------------------------------------------------


async def test_a_5_mib_draft_is_413_declared_or_streamed(flow_engine, published_flow) -> None:
    body = json.dumps({"name": "huge", "definition": {"nodes": [], "blob": "x" * (5 * 1024 * 1024)}}).encode()
    error = _refused(await flow_engine.post("/api/v1/flows", content=body,
                                            headers={"Content-Type": "application/json"}), 413)
    assert error["code"] == "payload_too_large"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit is found while reading
        for start in range(0, len(body), 65536):
            yield body[start:start + 65536]

    _refused(await flow_engine.post("/api/v1/flows", content=chunks(), headers={"Content-Type": "application/json"}),
             413)
    _refused(await flow_engine.patch(f"/api/v1/flows/{published_flow}", content=body,
                                     headers={"Content-Type": "application/json"}), 413)


async def test_flow_documents_are_limited_to_256_kib(flow_engine, published_flow) -> None:
    over = {"name": "big", "definition": {"nodes": [], "notes": "x" * (256 * 1024)}}
    _refused(await flow_engine.post("/api/v1/flows", json=over), 413)
    _refused(await flow_engine.patch(f"/api/v1/flows/{published_flow}", json=over), 413)
    under = {"name": "big", "definition": {"nodes": [], "notes": "x" * (200 * 1024)}}
    assert (await flow_engine.post("/api/v1/flows", json=under)).status_code == 201


async def test_a_draft_of_more_than_500_nodes_is_422(flow_engine, published_flow) -> None:
    def draft(count: int) -> dict[str, Any]:
        nodes = [{"id": "start", "type": "start", "next": "n1"}]
        nodes += [{"id": f"n{i}", "type": "message", "text": "hi", "next": f"n{i + 1}"} for i in range(1, count - 1)]
        nodes.append({"id": f"n{count - 1}", "type": "end"})
        return {"nodes": nodes}

    for request in (flow_engine.post("/api/v1/flows", json={"name": "many", "definition": draft(501)}),
                    flow_engine.patch(f"/api/v1/flows/{published_flow}", json={"definition": draft(501)})):
        error = _refused(await request, 422)
        assert "500" in json.dumps(error), error
    created = await flow_engine.post("/api/v1/flows", json={"name": "many", "definition": draft(500)})
    assert created.status_code == 201, created.text
    published = await flow_engine.post(f"/api/v1/flows/{created.json()['id']}/publish")
    assert published.status_code == 201, published.text
