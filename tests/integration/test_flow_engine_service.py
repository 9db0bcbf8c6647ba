"""The flow engine's use cases on real PostgreSQL (no Kafka): inbox, outbox, versions,
cycles, the 24-hour window, delays, handoffs, the REST API and tenancy."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import select, text

from pytake_contracts import (
    ContactRef,
    InboundMessage,
    InboundMessageRouted,
    MessageFailed,
    MessageFailedPayload,
    RoutedInboundPayload,
    Route,
)
from pytake_flow_engine.adapters.db.tables import OutboxRecord
from pytake_flow_engine.adapters.db.unit_of_work import SqlUnitOfWork
from pytake_flow_engine.adapters.http_client import SafeHttpClient, parse_networks
from pytake_flow_engine.app import MIGRATIONS, SERVICE
from pytake_flow_engine.entrypoints.http import build_router
from pytake_flow_engine.service.conversations import ConversationEngine
from pytake_flow_engine.service.flows import FlowService, publish_flow
from pytake_plumbing.auth import AuthSettings, Principal, Role, issue_access_token
from pytake_plumbing.database import make_engine, make_session_factory, run_migrations
from pytake_plumbing.errors import install_error_handlers
from pytake_plumbing.settings import CommonSettings

pytestmark = pytest.mark.integration

ORG = UUID("0f0e0d0c-0000-4000-8000-00000000000a")
OTHER_ORG = UUID("0f0e0d0c-0000-4000-8000-00000000000b")
AUTH = AuthSettings.model_validate({"JWT_SECRET": secrets.token_urlsafe(32)})


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Env:
    def __init__(self, settings: CommonSettings, uow_factory, http: SafeHttpClient) -> None:
        self.settings = settings
        self.uow = uow_factory
        self.clock = Clock()
        self.engine = ConversationEngine(uow_factory, self.clock, settings.topic, http)
        self.flows = FlowService(uow_factory, self.engine, self.clock)

    async def publish(self, nodes: list[dict], *, org: UUID = ORG, flow_id: UUID | None = None,
                      **extra: Any) -> UUID:
        flow_id = flow_id or uuid4()
        await publish_flow(self.uow(), org, flow_id, "test flow", {"nodes": nodes, **extra})
        return flow_id

    async def outbox(self, contact_key: str) -> list[dict]:
        async with self.uow() as tx:
            rows = await tx.session.scalars(select(OutboxRecord).order_by(OutboxRecord.seq))
            return [row.event for row in rows if row.key.endswith(":" + contact_key)]

    async def replies(self, contact_key: str) -> list[dict]:
        return [e["payload"]["message"] for e in await self.outbox(contact_key)
                if e["event_type"] == "message.outbound_requested"]

    async def lifecycle(self, contact_key: str) -> list[str]:
        return [e["event_type"] for e in await self.outbox(contact_key)
                if e["event_type"].startswith("conversation.")]


@pytest.fixture(scope="module")
async def env(settings: CommonSettings) -> AsyncIterator[Env]:
    mine = CommonSettings.model_validate({**settings.model_dump(by_alias=True),
                                          "PYTAKE_NAMESPACE": settings.namespace + "fes"})
    schema = mine.db_schema(SERVICE)
    await asyncio.to_thread(run_migrations, MIGRATIONS, mine.database_url, schema)
    db = make_engine(mine.database_url, schema)
    sessions = make_session_factory(db)
    http = SafeHttpClient(parse_networks("127.0.0.0/8"))
    try:
        yield Env(mine, lambda: SqlUnitOfWork(sessions), http)
    finally:
        await http.close()
        async with db.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await db.dispose()


def inbound(flow_id: UUID, wa_id: str, body: str | None, *, org: UUID = ORG, reply_id: str | None = None,
            sent: datetime | None = None, wamid: str | None = None) -> InboundMessageRouted:
    return InboundMessageRouted(
        organization_id=org, correlation_id=secrets.token_hex(8), producer="test",
        payload=RoutedInboundPayload(
            phone_number_id="100000000000001", contact=ContactRef(wa_id=wa_id, profile_name="Ada"),
            message=InboundMessage(wamid=wamid or "wamid." + secrets.token_hex(10), type="text",
                                   timestamp=int((sent or datetime.now(UTC)).timestamp()), text=body,
                                   reply_id=reply_id),
            route=Route(organization_id=org, chatbot_id=None, flow_id=flow_id)))


def new_contact() -> str:
    return "1555" + "".join(secrets.choice("0123456789") for _ in range(7))


def texts(replies: list[dict]) -> list[str]:
    return [m.get("body") or m.get("name") for m in replies]


ASK = [
    {"id": "s", "type": "start", "next": "q"},
    {"id": "q", "type": "question", "variable": "name", "text": "Name?", "next": "m"},
    {"id": "m", "type": "message", "text": "Hi {{name}}", "next": "e"},
    {"id": "e", "type": "end"},
]


async def test_the_same_inbound_message_twice_gives_one_set_of_replies(env: Env) -> None:
    flow = await env.publish(ASK)
    wa = new_contact()
    first = inbound(flow, wa, "hello")
    assert await env.engine.handle_inbound(first) is True
    assert await env.engine.handle_inbound(first) is False
    # A batch holding a redelivery and the same message twice counts each message once.
    answer = inbound(flow, wa, "Ada")
    assert await env.engine.handle_inbound_batch([first, answer, answer]) == 1
    assert texts(await env.replies(f"p:{wa}")) == ["Name?", "Hi Ada"]
    assert await env.lifecycle(f"p:{wa}") == ["conversation.started", "conversation.ended"]


async def test_a_conversation_finishes_on_the_version_it_started_on(env: Env) -> None:
    flow_id = await env.publish(ASK)
    wa_old, wa_new = new_contact(), new_contact()
    await env.engine.handle_inbound(inbound(flow_id, wa_old, "hi"))
    v2 = [dict(node) for node in ASK]
    v2[2] = {**v2[2], "text": "Hello there, {{name}}!"}
    assert await publish_flow(env.uow(), ORG, flow_id, "test flow", {"nodes": v2}) == 2
    await env.engine.handle_inbound(inbound(flow_id, wa_old, "Ada"))
    await env.engine.handle_inbound(inbound(flow_id, wa_new, "hi"))
    await env.engine.handle_inbound(inbound(flow_id, wa_new, "Bo"))
    assert texts(await env.replies(f"p:{wa_old}")) == ["Name?", "Hi Ada"]
    assert texts(await env.replies(f"p:{wa_new}")) == ["Name?", "Hello there, Bo!"]
    old = (await env.engine.search(ORG, contact_key=f"p:{wa_old}"))[0]
    assert old.flow_version == 1 and old.status == "ended"
    # Rollback republishes version 1 as version 3; new conversations get it.
    assert await env.flows.rollback(ORG, flow_id, 1, None) == 3
    wa_later = new_contact()
    await env.engine.handle_inbound(inbound(flow_id, wa_later, "hi"))
    await env.engine.handle_inbound(inbound(flow_id, wa_later, "Cy"))
    assert texts(await env.replies(f"p:{wa_later}")) == ["Name?", "Hi Cy"]


async def test_a_cycle_parks_the_conversation_and_others_are_served(env: Env) -> None:
    cyclic = await env.publish([
        {"id": "s", "type": "start", "next": "a"},
        {"id": "a", "type": "set_variable", "variable": "x", "value": "1", "next": "b"},
        {"id": "b", "type": "message", "text": "loop", "next": "a"},
    ])
    healthy = await env.publish(ASK)
    stuck, fine = new_contact(), new_contact()
    await env.engine.handle_inbound_batch([inbound(cyclic, stuck, "hi"), inbound(healthy, fine, "hi")])
    assert await env.replies(f"p:{stuck}") == []
    events = [e for e in await env.outbox(f"p:{stuck}") if e["event_type"] == "conversation.failed"]
    assert len(events) == 1 and "100" in events[0]["payload"]["error"]
    row = (await env.engine.search(ORG, contact_key=f"p:{stuck}"))[0]
    assert row.status == "failed" and row.error
    assert texts(await env.replies(f"p:{fine}")) == ["Name?"]
    # A parked conversation stays silent.
    await env.engine.handle_inbound(inbound(cyclic, stuck, "hello?"))
    assert await env.replies(f"p:{stuck}") == []


async def test_session_ttl_and_restart_keyword_restart_the_flow(env: Env) -> None:
    flow = await env.publish(ASK, settings={"restart_keywords": ["Restart"]})
    wa = new_contact()
    await env.engine.handle_inbound(inbound(flow, wa, "hi"))
    await env.engine.handle_inbound(inbound(flow, wa, "restart"))
    assert texts(await env.replies(f"p:{wa}")) == ["Name?", "Name?"]
    env.clock.now += timedelta(hours=25)
    try:
        await env.engine.handle_inbound(inbound(flow, wa, "back", sent=env.clock.now))
    finally:
        env.clock.now = datetime.now(UTC)
    assert texts(await env.replies(f"p:{wa}")) == ["Name?", "Name?", "Name?"]
    assert (await env.lifecycle(f"p:{wa}")).count("conversation.started") == 3


FALLBACK = {"fallback_template": {"name": "come_back", "language": "en_US", "parameters": ["{{contact_name}}"]}}


async def test_closed_window_sends_the_fallback_template(env: Env) -> None:
    flow = await env.publish(ASK, settings=FALLBACK)
    wa = new_contact()
    # Handled more than 24 hours after the customer wrote (e.g. a long backlog).
    await env.engine.handle_inbound(inbound(flow, wa, "hi", sent=datetime.now(UTC) - timedelta(hours=25)))
    (message,) = await env.replies(f"p:{wa}")
    assert message["type"] == "template" and message["name"] == "come_back"
    assert message["components"][0]["parameters"][0]["text"] == "Ada"
    silent = await env.publish(ASK)
    wa2 = new_contact()
    await env.engine.handle_inbound(inbound(silent, wa2, "hi", sent=datetime.now(UTC) - timedelta(hours=25)))
    assert await env.replies(f"p:{wa2}") == []


async def test_a_131047_failure_answers_once_with_the_fallback_template(env: Env) -> None:
    flow = await env.publish([
        {"id": "s", "type": "start", "next": "m"},
        {"id": "m", "type": "message", "text": "one", "next": "q"},
        {"id": "q", "type": "question", "variable": "name", "text": "two", "next": "e"},
        {"id": "e", "type": "end"},
    ], settings=FALLBACK)
    wa = new_contact()
    await env.engine.handle_inbound(inbound(flow, wa, "hi"))
    requests = [e for e in await env.outbox(f"p:{wa}") if e["event_type"] == "message.outbound_requested"]
    assert len(requests) == 2

    def failure(request: dict, code: int) -> MessageFailed:
        return MessageFailed(organization_id=ORG, correlation_id=request["correlation_id"], producer="sender",
                             payload=MessageFailedPayload(request_id=UUID(request["event_id"]),
                                                          phone_number_id="100000000000001",
                                                          to=ContactRef(wa_id=wa), error_code=code,
                                                          error_message="window closed", attempts=1))

    assert await env.engine.handle_delivery_failure(failure(requests[0], 130429)) is False
    assert await env.engine.handle_delivery_failure(failure(requests[0], 131047)) is True
    assert await env.engine.handle_delivery_failure(failure(requests[1], 131047)) is False
    assert await env.engine.handle_delivery_failure(failure(requests[0], 131047)) is False
    assert texts(await env.replies(f"p:{wa}")) == ["one", "two", "come_back"]
    # Another tenant's failure event cannot reach this conversation.
    other = failure(requests[0], 131047).model_copy(update={"organization_id": OTHER_ORG})
    assert await env.engine.handle_delivery_failure(other) is False


async def test_delay_is_resumed_by_the_poller(env: Env) -> None:
    flow = await env.publish([
        {"id": "s", "type": "start", "next": "m"},
        {"id": "m", "type": "message", "text": "brb", "next": "d"},
        {"id": "d", "type": "delay", "seconds": 3600, "next": "n"},
        {"id": "n", "type": "message", "text": "back", "next": "e"},
        {"id": "e", "type": "end"},
    ], settings=FALLBACK)
    wa = new_contact()
    await env.engine.handle_inbound(inbound(flow, wa, "hi"))
    row = (await env.engine.search(ORG, contact_key=f"p:{wa}"))[0]
    assert row.status == "sleeping" and row.wake_at is not None
    await env.engine.wake_due()
    assert texts(await env.replies(f"p:{wa}")) == ["brb"]
    env.clock.now = row.wake_at + timedelta(seconds=1)
    try:
        assert await env.engine.wake_due() >= 1
    finally:
        env.clock.now = datetime.now(UTC)
    assert texts(await env.replies(f"p:{wa}")) == ["brb", "back"]
    assert (await env.engine.get(ORG, row.id)).status == "ended"


async def test_delay_past_the_window_sends_the_template_instead(env: Env) -> None:
    flow = await env.publish([
        {"id": "s", "type": "start", "next": "d"},
        {"id": "d", "type": "delay", "seconds": 2 * 24 * 3600, "next": "n"},
        {"id": "n", "type": "message", "text": "free-form", "next": "e"},
        {"id": "e", "type": "end"},
    ], settings=FALLBACK)
    wa = new_contact()
    await env.engine.handle_inbound(inbound(flow, wa, "hi"))
    env.clock.now += timedelta(days=2, seconds=1)
    try:
        await env.engine.wake_due()
    finally:
        env.clock.now = datetime.now(UTC)
    assert texts(await env.replies(f"p:{wa}")) == ["come_back"]


async def test_handoff_keeps_the_bot_silent_until_released(env: Env) -> None:
    flow = await env.publish([
        {"id": "s", "type": "start", "next": "h"},
        {"id": "h", "type": "handoff", "text": "Passing you to a person.", "next": "m"},
        {"id": "m", "type": "message", "text": "Bot again.", "next": "e"},
        {"id": "e", "type": "end"},
    ])
    wa = new_contact()
    await env.engine.handle_inbound(inbound(flow, wa, "help"))
    await env.engine.handle_inbound(inbound(flow, wa, "hello??"))
    assert texts(await env.replies(f"p:{wa}")) == ["Passing you to a person."]
    assert "conversation.handed_off" in await env.lifecycle(f"p:{wa}")
    row = (await env.engine.search(ORG, contact_key=f"p:{wa}"))[0]
    with pytest.raises(LookupError):
        await env.engine.release(OTHER_ORG, row.id)
    released = await env.engine.release(ORG, row.id)
    assert released.status == "ended"
    assert texts(await env.replies(f"p:{wa}")) == ["Passing you to a person.", "Bot again."]


async def test_jump_continues_in_the_other_flow(env: Env) -> None:
    target = await env.publish([
        {"id": "s", "type": "start", "next": "q"},
        {"id": "q", "type": "question", "variable": "topic", "text": "Billing: what about, {{name}}?",
         "next": "e"},
        {"id": "e", "type": "end", "text": "Noted: {{topic}}"},
    ], variables={"name": ""})
    entry = await env.publish([
        {"id": "s", "type": "start", "next": "v"},
        {"id": "v", "type": "set_variable", "variable": "name", "value": "{{contact_name}}", "next": "j"},
        {"id": "j", "type": "jump", "flow_id": str(target)},
    ])
    wa = new_contact()
    await env.engine.handle_inbound(inbound(entry, wa, "hi"))
    await env.engine.handle_inbound(inbound(entry, wa, "refund"))
    assert texts(await env.replies(f"p:{wa}")) == ["Billing: what about, Ada?", "Noted: refund"]
    row = (await env.engine.search(ORG, contact_key=f"p:{wa}"))[0]
    assert row.flow_id == entry and row.active_flow_id == target


class _Orders(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = b'{"order": {"status": "shipped", "eta": 2}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


async def test_http_request_node_calls_an_allowed_local_server(env: Env) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Orders)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        flow = await env.publish([
            {"id": "s", "type": "start", "next": "h"},
            {"id": "h", "type": "http_request", "url": f"http://127.0.0.1:{server.server_port}/orders/{{{{last_message}}}}",
             "save": {"status": "order.status", "eta": "order.eta"}, "next": "m", "on_error": "x"},
            {"id": "m", "type": "end", "text": "Order {{status}}, {{eta}} days"},
            {"id": "x", "type": "end", "text": "lookup failed"},
        ])
        wa = new_contact()
        await env.engine.handle_inbound(inbound(flow, wa, "A-1"))
        assert texts(await env.replies(f"p:{wa}")) == ["Order shipped, 2 days"]
    finally:
        server.shutdown()
        server.server_close()


async def test_http_request_to_a_private_address_is_refused_by_default(env: Env) -> None:
    flow = await env.publish([
        {"id": "s", "type": "start", "next": "h"},
        {"id": "h", "type": "http_request", "url": "http://169.254.169.254/latest/meta-data/", "next": "m",
         "on_error": "x"},
        {"id": "m", "type": "end", "text": "reached"},
        {"id": "x", "type": "end", "text": "refused"},
    ])
    wa = new_contact()
    await env.engine.handle_inbound(inbound(flow, wa, "hi"))
    assert texts(await env.replies(f"p:{wa}")) == ["refused"]


# --- REST API -----------------------------------------------------------------------------


def token(org: UUID, role: Role) -> dict[str, str]:
    principal = Principal(user_id=uuid4(), organization_id=org, role=role)
    return {"Authorization": f"Bearer {issue_access_token(principal, AUTH)}"}


@pytest.fixture(scope="module")
async def api(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    from fastapi import FastAPI

    app = FastAPI()
    install_error_handlers(app)

    async def nothing() -> None:
        return None

    app.include_router(build_router(env.flows, env.engine, AUTH, nothing))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


async def test_flow_api_drafts_publishes_and_reports_every_error(api: httpx.AsyncClient) -> None:
    admin = token(ORG, Role.ORG_ADMIN)
    created = await api.post("/api/v1/flows", headers=admin, json={"name": "Shop", "definition": {"nodes": [
        {"id": "s", "type": "start", "next": "b"},
        {"id": "b", "type": "buttons", "text": "?", "buttons": [
            {"id": "1", "title": "This title is far too long", "next": "nowhere"}]},
        {"id": "lost", "type": "end", "text": "{{ghost}}"},
    ]}})
    assert created.status_code == 201, created.text
    flow_id = created.json()["id"]
    refused = await api.post(f"/api/v1/flows/{flow_id}/publish", headers=admin)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_flow"
    assert any("20 characters" in d["msg"] for d in refused.json()["error"]["details"])
    fixed = {"nodes": ASK}
    assert (await api.patch(f"/api/v1/flows/{flow_id}", headers=admin, json={"definition": fixed})).status_code == 200
    refused_graph = await api.patch(f"/api/v1/flows/{flow_id}", headers=admin, json={"definition": {"nodes": [
        {"id": "s", "type": "start", "next": "x"}, {"id": "lost", "type": "end", "text": "{{ghost}}"}]}})
    assert refused_graph.status_code == 200  # drafts may be invalid; publishing checks them
    details = (await api.post(f"/api/v1/flows/{flow_id}/publish", headers=admin)).json()["error"]["details"]
    assert {d["msg"] for d in details} == {"node 's' points to missing node 'x'",
                                          "node 'lost' is not reachable from the start",
                                          "node 'lost' uses unknown variable 'ghost'"}
    await api.patch(f"/api/v1/flows/{flow_id}", headers=admin, json={"definition": fixed})
    published = await api.post(f"/api/v1/flows/{flow_id}/publish", headers=admin)
    assert published.status_code == 201 and published.json()["version"] == 1
    versions = (await api.get(f"/api/v1/flows/{flow_id}/versions", headers=token(ORG, Role.VIEWER))).json()
    assert [v["version"] for v in versions] == [1]

    simulated = await api.post(f"/api/v1/flows/{flow_id}/versions/1/simulate", headers=admin,
                               json={"inputs": ["hi", "Ada"]})
    assert simulated.status_code == 200, simulated.text
    result = simulated.json()
    assert result["variables"]["name"] == "Ada" and result["status"] == "ended"
    assert [t.get("message", {}).get("body") or t.get("text") for t in result["transcript"]] == [
        "hi", "Name?", "Ada", "Hi Ada"]


async def test_flow_api_roles_and_tenancy(api: httpx.AsyncClient, env: Env) -> None:
    flow_id = await env.publish(ASK)
    viewer = token(ORG, Role.VIEWER)
    assert (await api.get(f"/api/v1/flows/{flow_id}", headers=viewer)).status_code == 200
    assert (await api.post("/api/v1/flows", headers=viewer, json={"name": "x"})).status_code == 403
    assert (await api.post(f"/api/v1/flows/{flow_id}/publish", headers=viewer)).status_code == 403
    assert (await api.get(f"/api/v1/flows/{flow_id}")).status_code == 401
    stranger = token(OTHER_ORG, Role.ORG_ADMIN)
    for method, path in [("GET", f"/api/v1/flows/{flow_id}"), ("GET", f"/api/v1/flows/{flow_id}/versions"),
                         ("POST", f"/api/v1/flows/{flow_id}/versions/1/rollback"),
                         ("POST", f"/api/v1/flows/{flow_id}/publish"), ("DELETE", f"/api/v1/flows/{flow_id}")]:
        assert (await api.request(method, path, headers=stranger)).status_code == 404, path
    assert flow_id not in {f["id"] for f in (await api.get("/api/v1/flows", headers=stranger)).json()}
    simulated = await api.post(f"/api/v1/flows/{flow_id}/versions/1/simulate", headers=stranger,
                               json={"inputs": ["hi"]})
    assert simulated.status_code == 404


async def test_conversation_api_lists_ends_and_releases(api: httpx.AsyncClient, env: Env) -> None:
    flow = await env.publish([
        {"id": "s", "type": "start", "next": "h"},
        {"id": "h", "type": "handoff", "next": "e"},
        {"id": "e", "type": "end", "text": "bye"},
    ])
    wa = new_contact()
    await env.engine.handle_inbound(inbound(flow, wa, "hi"))
    agent, viewer, stranger = token(ORG, Role.AGENT), token(ORG, Role.VIEWER), token(OTHER_ORG, Role.ORG_ADMIN)
    listed = (await api.get("/api/v1/conversations", headers=viewer,
                            params={"contact_key": f"p:{wa}", "status": "handoff"})).json()
    assert len(listed) == 1
    conversation_id = listed[0]["id"]
    assert (await api.get("/api/v1/conversations", headers=stranger,
                          params={"contact_key": f"p:{wa}"})).json() == []
    assert (await api.get(f"/api/v1/conversations/{conversation_id}", headers=stranger)).status_code == 404
    assert (await api.post(f"/api/v1/conversations/{conversation_id}/release", headers=stranger)).status_code == 404
    assert (await api.post(f"/api/v1/conversations/{conversation_id}/release", headers=viewer)).status_code == 403
    released = await api.post(f"/api/v1/conversations/{conversation_id}/release", headers=agent)
    assert released.status_code == 200 and released.json()["status"] == "ended"
    assert (await api.post(f"/api/v1/conversations/{conversation_id}/release", headers=agent)).status_code == 409
    assert texts(await env.replies(f"p:{wa}")) == ["bye"]
    await env.engine.handle_inbound(inbound(flow, wa, "again"))
    ended = await api.post(f"/api/v1/conversations/{conversation_id}/end", headers=agent)
    assert ended.status_code == 200 and ended.json()["status"] == "ended"
    assert (await api.post(f"/api/v1/conversations/{conversation_id}/end", headers=agent)).status_code == 409
