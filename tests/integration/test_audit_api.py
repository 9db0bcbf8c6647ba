"""The audit's query API on the local MongoDB-compatible server: a scripted set of
conversations, written through the real write path, gives the figures worked out by hand;
no endpoint shows one organization another's data."""

from __future__ import annotations

import random
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI

from pytake_audit.adapters.mongo_store import AuditQueries, AuditStore, RetentionRepository
from pytake_audit.entrypoints.http import build_router
from pytake_audit.samples import T0, conversation, inbound, outbound, send_failed, sent, status
from pytake_audit.service.queries import AuditQueryService, RetentionService
from pytake_audit.service.record import RetentionPolicy, record_events
from pytake_contracts.events import ConversationAdvanced, ConversationEnded, ConversationStarted
from pytake_plumbing.auth import AuthSettings, Principal, Role, issue_access_token
from pytake_plumbing.errors import install_error_handlers
from pytake_plumbing.mongo import make_mongo_client

pytestmark = pytest.mark.integration

ORG_A, ORG_B = uuid4(), uuid4()
FLOW = uuid4()  # both organizations use this flow id: the funnel must still keep them apart
D1, D2 = T0, T0 + timedelta(days=1)  # 2026-03-02 and 2026-03-03
WINDOW = {"since": "2026-03-01T00:00:00Z", "until": "2026-03-05T00:00:00Z"}


@dataclass
class Script:
    events: list
    conversations: dict[str, UUID]
    requests: dict[str, UUID]


def script() -> Script:
    """Organization A, flow start → ask → greet → end, four conversations:
    c1 (D1): Hi → ask; Ada → greet, end.        replies sent: w1 (read before delivered), w2 (delivered)
    c2 (D1): Hi → ask, and stops there.          reply sent: w3 (failed)
    c3 (D2): Hi → ask; "?" → ask again (re-prompt) and stops.   replies sent: w4 (read only), w5 (delivered twice)
    c4 (D2): Hi → ask; Bo → greet, end.          reply sent: w6 (no status yet); second reply refused by Meta
    Organization B, same flow id, one conversation c5 (D1): Hi → ask; reply w7 read.
    """
    events: list = []
    conversations = {name: uuid4() for name in ("c1", "c2", "c3", "c4", "c5")}
    requests: dict[str, UUID] = {}

    def turn(org, name, wa_id, text, at, kind, node, state, visited, wamid=None, refused=False):
        message = inbound(org, wa_id, text, at)
        events.append(message)
        events.append(conversation(kind, message, conversations[name], FLOW, node, state, visited))
        request = outbound(message, conversations[name], f"reply to {text}")
        events.append(request)
        if wamid:
            requests[wamid] = request.event_id
            events.append(sent(request, wamid))
        if refused:
            requests[f"{name}-refused"] = request.event_id
            events.append(send_failed(request))

    def statuses(org, wamid, *names, at, to):
        for offset, name in enumerate(names):
            events.append(status(org, wamid, name, at + timedelta(seconds=10 + offset), wa_id=to))

    turn(ORG_A, "c1", "15550000001", "Hi", D1, ConversationStarted, "ask", "waiting", ["start", "ask"], "w1")
    turn(ORG_A, "c1", "15550000001", "Ada", D1 + timedelta(minutes=1), ConversationEnded, "end", "ended",
         ["greet", "end"], "w2")
    statuses(ORG_A, "w1", "sent", "read", "delivered", at=D1, to="15550000001")
    statuses(ORG_A, "w2", "sent", "delivered", at=D1, to="15550000001")
    turn(ORG_A, "c2", "15550000002", "Hi", D1 + timedelta(hours=1), ConversationStarted, "ask", "waiting",
         ["start", "ask"], "w3")
    statuses(ORG_A, "w3", "sent", "failed", at=D1, to="15550000002")
    turn(ORG_A, "c3", "15550000003", "Hi", D2, ConversationStarted, "ask", "waiting", ["start", "ask"], "w4")
    turn(ORG_A, "c3", "15550000003", "?", D2 + timedelta(minutes=1), ConversationAdvanced, "ask", "waiting",
         ["ask"], "w5")
    statuses(ORG_A, "w4", "read", at=D2, to="15550000003")
    statuses(ORG_A, "w5", "delivered", "delivered", at=D2, to="15550000003")
    turn(ORG_A, "c4", "15550000004", "Hi", D2 + timedelta(hours=2), ConversationStarted, "ask", "waiting",
         ["start", "ask"], "w6")
    turn(ORG_A, "c4", "15550000004", "Bo", D2 + timedelta(hours=3), ConversationEnded, "end", "ended",
         ["greet", "end"], refused=True)
    turn(ORG_B, "c5", "15550000005", "Hi", D1, ConversationStarted, "ask", "waiting", ["start", "ask"], "w7")
    statuses(ORG_B, "w7", "sent", "delivered", "read", at=D1, to="15550000005")
    return Script(events, conversations, requests)


@pytest.fixture(scope="module")
async def api(settings) -> AsyncIterator[tuple[httpx.AsyncClient, AuthSettings, Script]]:
    database = f"{settings.namespace}_audit_api"
    client = make_mongo_client(settings.mongodb_url)
    store = AuditStore(client, database)
    await store.ensure_indexes()
    repository = RetentionRepository(client, database)
    policy = RetentionPolicy(repository, default_days=365)
    scripted = script()
    shuffled = scripted.events[:]
    random.Random(8).shuffle(shuffled)  # Kafka keeps order per key only: the audit must not need it
    for start in range(0, len(shuffled), 7):
        await record_events(shuffled[start:start + 7], store, policy)
    auth = AuthSettings(JWT_SECRET=secrets.token_urlsafe(32))
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_router(AuditQueryService(AuditQueries(client, database)),
                                    RetentionService(repository, policy), auth))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://audit") as http:
        yield http, auth, scripted
    await client.drop_database(database)
    await client.close()


def headers(auth: AuthSettings, org: UUID, role: Role = Role.VIEWER) -> dict[str, str]:
    token = issue_access_token(Principal(user_id=uuid4(), organization_id=org, role=role), auth)
    return {"Authorization": f"Bearer {token}"}


async def get(api, org: UUID, path: str, **params) -> httpx.Response:
    http, auth, _ = api
    return await http.get(f"/api/v1/audit{path}", params=params, headers=headers(auth, org))


async def test_flow_funnel_equals_the_hand_count(api) -> None:
    body = (await get(api, ORG_A, "/analytics/funnel", flow_id=str(FLOW), **WINDOW)).json()
    assert body["conversations"] == 4
    nodes = {n["node_id"]: (n["reached"], n["stopped"], n["stopped_by_status"]) for n in body["nodes"]}
    assert nodes == {
        "start": (4, 0, {}),
        "ask": (4, 2, {"waiting": 2}),  # c2 and c3 stopped at the question
        "greet": (2, 0, {}),
        "end": (2, 2, {"ended": 2}),  # c1 and c4 finished
    }


async def test_delivery_and_read_rates_equal_the_hand_count(api) -> None:
    body = (await get(api, ORG_A, "/analytics/delivery-rates", **WINDOW)).json()
    # Sent with a wamid: w1..w6 = 6. Delivered: w1, w2, w4 (read implies it), w5 = 4. Read: w1, w4. Failed: w3.
    assert (body["sent"], body["delivered"], body["read"], body["failed"]) == (6, 4, 2, 1)
    assert body["delivery_rate"] == pytest.approx(4 / 6) and body["read_rate"] == pytest.approx(2 / 6)


async def test_messages_per_day_equal_the_hand_count(api) -> None:
    body = (await get(api, ORG_A, "/analytics/messages-per-day", **WINDOW)).json()
    # D1: in = c1 ×2, c2 ×1; out (sent) = w1, w2, w3.  D2: in = c3 ×2, c4 ×2; out = w4, w5, w6 (c4's 2nd refused).
    assert body["days"] == [{"day": "2026-03-02", "inbound": 3, "outbound": 3},
                            {"day": "2026-03-03", "inbound": 4, "outbound": 3}]


async def test_analytics_of_another_organization_are_its_own(api) -> None:
    funnel = (await get(api, ORG_B, "/analytics/funnel", flow_id=str(FLOW), **WINDOW)).json()
    assert funnel["conversations"] == 1
    assert {n["node_id"]: n["reached"] for n in funnel["nodes"]} == {"start": 1, "ask": 1}
    rates = (await get(api, ORG_B, "/analytics/delivery-rates", **WINDOW)).json()
    assert (rates["sent"], rates["delivered"], rates["read"], rates["failed"]) == (1, 1, 1, 0)
    days = (await get(api, ORG_B, "/analytics/messages-per-day", **WINDOW)).json()["days"]
    assert days == [{"day": "2026-03-02", "inbound": 1, "outbound": 1}]
    nobody = uuid4()
    assert (await get(api, nobody, "/analytics/funnel", flow_id=str(FLOW), **WINDOW)).json()["conversations"] == 0
    assert (await get(api, nobody, "/analytics/messages-per-day", **WINDOW)).json()["days"] == []


async def test_message_status_follows_the_monotonic_timeline(api) -> None:
    body = (await get(api, ORG_A, "/messages/w1/status")).json()
    _, _, scripted = api
    assert body["status"] == "read" and set(body["at"]) == {"sent", "delivered", "read"}
    assert body["request_id"] == str(scripted.requests["w1"])
    assert body["conversation_id"] == str(scripted.conversations["c1"])
    assert (await get(api, ORG_A, "/messages/w3/status")).json()["status"] == "failed"
    assert (await get(api, ORG_A, "/messages/w6/status")).json()["status"] == "sent"


async def test_message_status_of_another_organization_is_not_found(api) -> None:
    response = await get(api, ORG_B, "/messages/w1/status")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert (await get(api, ORG_A, "/messages/w7/status")).status_code == 404
    assert (await get(api, ORG_B, "/messages/w7/status")).json()["status"] == "read"


async def test_conversation_timeline_shows_everything_in_order(api) -> None:
    _, _, scripted = api
    body = (await get(api, ORG_A, f"/conversations/{scripted.conversations['c1']}/timeline")).json()
    types = [e["event_type"] for e in body["entries"]]
    assert sorted(types) == sorted(
        ["message.inbound_routed", "conversation.started", "message.outbound_requested", "message.sent"] +
        ["message.inbound_routed", "conversation.ended", "message.outbound_requested", "message.sent"] +
        ["message.status_routed"] * 5)
    times = [datetime.fromisoformat(e["occurred_at"]) for e in body["entries"]]
    assert times == sorted(times)
    assert {e["contact_key"] for e in body["entries"]} == {"p:15550000001"}


async def test_conversation_timeline_of_another_organization_is_not_found(api) -> None:
    _, _, scripted = api
    response = await get(api, ORG_B, f"/conversations/{scripted.conversations['c1']}/timeline")
    assert response.status_code == 404
    assert (await get(api, ORG_A, f"/conversations/{scripted.conversations['c5']}/timeline")).status_code == 404


async def test_search_by_contact_direction_type_and_time(api) -> None:
    _, _, scripted = api
    c1 = (await get(api, ORG_A, "/messages", contact="15550000001", **WINDOW)).json()
    assert c1["total"] == 4
    assert [(i["direction"], i["text"]) for i in c1["items"]] == [  # newest first
        ("out", "reply to Ada"), ("in", "Ada"), ("out", "reply to Hi"), ("in", "Hi")]
    assert [i["status"] for i in c1["items"] if i["direction"] == "out"] == ["delivered", "read"]
    inbound_d2 = (await get(api, ORG_A, "/messages", direction="in", since="2026-03-03T00:00:00Z",
                            until="2026-03-04T00:00:00Z")).json()
    assert inbound_d2["total"] == 4 and {i["contact_key"] for i in inbound_d2["items"]} == {
        "p:15550000003", "p:15550000004"}
    assert (await get(api, ORG_A, "/messages", type="image", **WINDOW)).json()["total"] == 0
    refused = (await get(api, ORG_A, "/messages", contact="p:15550000004", direction="out", **WINDOW)).json()
    assert [i["status"] for i in refused["items"]] == ["send_failed", "sent"]
    assert refused["items"][0]["event_id"] == str(scripted.requests["c4-refused"])


async def test_search_is_paginated(api) -> None:
    first = (await get(api, ORG_A, "/messages", limit=5, offset=0, **WINDOW)).json()
    rest = (await get(api, ORG_A, "/messages", limit=5, offset=5, **WINDOW)).json()
    everything = (await get(api, ORG_A, "/messages", limit=200, **WINDOW)).json()
    assert first["total"] == rest["total"] == everything["total"] == 7 + 7  # 7 inbound, one reply requested to each
    assert [i["event_id"] for i in first["items"] + rest["items"]] == [i["event_id"] for i in everything["items"]][:10]


async def test_search_never_shows_another_organizations_messages(api) -> None:
    mine = (await get(api, ORG_B, "/messages", **WINDOW)).json()
    assert mine["total"] == 2 and {i["contact_key"] for i in mine["items"]} == {"p:15550000005"}
    assert (await get(api, ORG_B, "/messages", contact="15550000001", **WINDOW)).json()["total"] == 0


async def test_retention_is_per_organization_and_admin_only(api) -> None:
    http, auth, _ = api
    url = "/api/v1/audit/retention"
    assert (await http.get(url, headers=headers(auth, ORG_A))).json() == {
        "organization_id": str(ORG_A), "days": 365, "default": True}
    denied = await http.put(url, json={"days": 30}, headers=headers(auth, ORG_A, Role.VIEWER))
    assert denied.status_code == 403
    changed = await http.put(url, json={"days": 30}, headers=headers(auth, ORG_A, Role.ORG_ADMIN))
    assert changed.status_code == 200 and changed.json()["days"] == 30
    assert (await http.get(url, headers=headers(auth, ORG_A))).json()["days"] == 30
    assert (await http.get(url, headers=headers(auth, ORG_B))).json() == {
        "organization_id": str(ORG_B), "days": 365, "default": True}
    bad = await http.put(url, json={"days": 0}, headers=headers(auth, ORG_A, Role.ORG_ADMIN))
    assert bad.status_code == 422


@pytest.mark.parametrize("path", ["/messages", "/messages/w1/status", "/analytics/messages-per-day",
                                  "/analytics/delivery-rates", f"/analytics/funnel?flow_id={FLOW}", "/retention",
                                  f"/conversations/{uuid4()}/timeline"])
async def test_every_endpoint_needs_a_token(api, path: str) -> None:
    http, _, _ = api
    response = await http.get(f"/api/v1/audit{path}")
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"
    forged = await http.get(f"/api/v1/audit{path}", headers={"Authorization": "Bearer not-a-token"})
    assert forged.status_code == 401


async def test_invalid_queries_are_refused_with_a_structured_error(api) -> None:
    backwards = await get(api, ORG_A, "/analytics/delivery-rates", since="2026-03-05T00:00:00Z",
                          until="2026-03-01T00:00:00Z")
    assert backwards.status_code == 422 and backwards.json()["error"]["code"] == "validation_error"
    assert (await get(api, ORG_A, "/messages", limit=1000)).status_code == 422
    assert (await get(api, ORG_A, "/messages", direction="sideways")).status_code == 422
    assert (await get(api, ORG_A, "/analytics/funnel")).status_code == 422  # flow_id is required


async def test_default_window_is_the_last_30_days(api) -> None:
    body = (await get(api, ORG_A, "/analytics/delivery-rates")).json()
    until = datetime.fromisoformat(body["until"])
    assert until - datetime.fromisoformat(body["since"]) == timedelta(days=30)
    assert abs(datetime.now(UTC) - until) < timedelta(minutes=5)
