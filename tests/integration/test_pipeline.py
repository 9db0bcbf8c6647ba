"""A customer's messages travel gateway → router → flow engine → sender → Graph API,
with audit recording everything: five real processes on real Kafka, PostgreSQL and
the MongoDB-compatible server."""

from __future__ import annotations

import json
import secrets
from uuid import UUID

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pytake_devstack import meta_payloads
from pytake_devstack.demo_tenant import DEMO_TENANT
from pytake_devstack.pytest_plugin import OTHER_TENANT
from pytake_plumbing.mongo import make_mongo_client
from pytake_plumbing.settings import CommonSettings

from .waiting import eventually

pytestmark = pytest.mark.integration

QUESTION = "Hi! I'm the PyTake demo bot. What's your name?"


def new_wa_id() -> str:
    return "1555" + "".join(secrets.choice("0123456789") for _ in range(7))


async def post_webhook(stack, payload: dict, secret: str = DEMO_TENANT.app_secret) -> httpx.Response:
    body = meta_payloads.encode(payload)
    async with httpx.AsyncClient() as client:
        return await client.post(f"{stack.url('gateway')}/api/v1/webhooks/whatsapp", content=body, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": meta_payloads.sign(body, secret)})


async def graph_calls(stack, recipient: str) -> list[dict]:
    async with httpx.AsyncClient() as client:
        calls = (await client.get(f"{stack.url('fake-graph-api')}/_fake/calls")).json()
    return [c for c in calls if recipient in (c["body"].get("to"), c["body"].get("recipient"))]


async def conversation_row(settings: CommonSettings, organization_id: str, contact_key: str) -> dict | None:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            row = (await connection.execute(text(
                f'SELECT organization_id, status, variables, flow_version, node_id '
                f'FROM "{settings.db_schema("flow-engine")}".conversations '
                f'WHERE organization_id = :org AND contact_key = :contact'),
                {"org": organization_id, "contact": contact_key})).mappings().first()
            return dict(row) if row else None
    finally:
        await engine.dispose()


async def audit_types(settings: CommonSettings, query: dict) -> list[str]:
    client = make_mongo_client(settings.mongodb_url)
    try:
        cursor = client[settings.mongodb_database]["events"].find(query, {"event_type": 1})
        return sorted([doc["event_type"] async for doc in cursor])
    finally:
        await client.close()


async def test_conversation_travels_through_all_five_services(pipeline, settings) -> None:
    wa_id = new_wa_id()
    response = await post_webhook(pipeline, meta_payloads.text_message(DEMO_TENANT.phone_number_id, "Hi", wa_id=wa_id))
    assert response.status_code == 200 and response.json()["stored"] == 1

    calls = await eventually(lambda: graph_calls(pipeline, wa_id), lambda c: len(c) >= 1)
    assert calls[0]["body"]["text"]["body"] == QUESTION
    assert calls[0]["phone_number_id"] == DEMO_TENANT.phone_number_id
    # The access token came from the tenant registry, decrypted: it is in no setting.
    assert calls[0]["authorization"] == f"Bearer {DEMO_TENANT.access_token}"

    await post_webhook(pipeline, meta_payloads.text_message(DEMO_TENANT.phone_number_id, "Ada", wa_id=wa_id))
    calls = await eventually(lambda: graph_calls(pipeline, wa_id), lambda c: len(c) >= 2)
    assert [c["body"]["text"]["body"] for c in calls] == [
        QUESTION, "Nice to meet you, Ada! Your message went through all five PyTake services."]

    row = await eventually(lambda: conversation_row(settings, DEMO_TENANT.organization_id, f"p:{wa_id}"),
                           lambda r: r is not None and r["status"] == "ended")
    assert row["variables"] == {"name": "Ada"}
    assert row["flow_version"] == 1 and row["node_id"] == "end"

    expected = sorted([
        "webhook.message_received", "webhook.message_received",
        "message.inbound_routed", "message.inbound_routed",
        "message.outbound_requested", "message.outbound_requested",
        "message.sent", "message.sent",
        "conversation.started", "conversation.ended",
    ])
    query = {"$or": [{"payload.contact.wa_id": wa_id}, {"payload.to.wa_id": wa_id},
                     {"payload.contact_key": f"p:{wa_id}"}]}
    seen = await eventually(lambda: audit_types(settings, query), lambda types: types == expected)
    assert seen == expected


async def test_one_trace_and_one_correlation_id_follow_a_message(pipeline, settings) -> None:
    wa_id = new_wa_id()
    await post_webhook(pipeline, meta_payloads.text_message(DEMO_TENANT.phone_number_id, "Hi", wa_id=wa_id))
    await eventually(lambda: graph_calls(pipeline, wa_id), lambda c: len(c) >= 1)
    client = make_mongo_client(settings.mongodb_url)
    events = client[settings.mongodb_database]["events"]
    try:
        received = await eventually(
            lambda: events.find_one({"event_type": "webhook.message_received", "payload.contact.wa_id": wa_id}),
            lambda doc: doc is not None)
        correlation = received["correlation_id"]

        async def chain() -> list[dict]:
            return [d async for d in events.find({"correlation_id": correlation})]

        docs = await eventually(chain, lambda d: {x["event_type"] for x in d} >= {
            "webhook.message_received", "message.inbound_routed", "message.outbound_requested", "message.sent",
            "conversation.started"})
    finally:
        await client.close()
    trace_ids = {doc["traceparent"].split("-")[1] for doc in docs}
    assert len(trace_ids) == 1 and None not in trace_ids
    # Every service's JSON log line about this message carries its correlation id.
    for service in ("router", "flow-engine", "sender", "audit"):
        lines = [json.loads(line) for line in (pipeline.log_dir / f"{service}.log").read_text().splitlines()
                 if correlation in line]
        assert any(line.get("event") == "event_handled" and line.get("correlation_id") == correlation
                   for line in lines), service


async def test_redelivered_webhook_gets_one_reply(pipeline) -> None:
    wa_id = new_wa_id()
    first = meta_payloads.text_message(DEMO_TENANT.phone_number_id, "Hi", wa_id=wa_id)
    for _ in range(3):  # Meta delivers at least once
        assert (await post_webhook(pipeline, first)).status_code == 200
    # Same conversation key, so the next message is handled after the duplicates.
    await post_webhook(pipeline, meta_payloads.text_message(DEMO_TENANT.phone_number_id, "Bo", wa_id=wa_id))
    calls = await eventually(lambda: graph_calls(pipeline, wa_id), lambda c: len(c) >= 2)
    assert [c["body"]["text"]["body"] for c in calls] == [
        QUESTION, "Nice to meet you, Bo! Your message went through all five PyTake services."]


async def test_contact_with_only_a_business_scoped_id(pipeline, settings) -> None:
    user_id = "US." + secrets.token_hex(8)
    await post_webhook(pipeline, meta_payloads.text_message(DEMO_TENANT.phone_number_id, "Hi", wa_id=None,
                                                            user_id=user_id))
    calls = await eventually(lambda: graph_calls(pipeline, user_id), lambda c: len(c) >= 1)
    assert calls[0]["body"]["recipient"] == user_id and "to" not in calls[0]["body"]
    row = await conversation_row(settings, DEMO_TENANT.organization_id, f"u:{user_id}")
    assert row is not None and row["status"] == "waiting"


async def test_tenants_stay_apart(pipeline, settings) -> None:
    wa_id = new_wa_id()
    await post_webhook(pipeline, meta_payloads.text_message(OTHER_TENANT.phone_number_id, "Hi", wa_id=wa_id))
    calls = await eventually(lambda: graph_calls(pipeline, wa_id), lambda c: len(c) >= 1)
    assert calls[0]["phone_number_id"] == OTHER_TENANT.phone_number_id
    assert calls[0]["authorization"] == f"Bearer {OTHER_TENANT.access_token}"
    other = await conversation_row(settings, OTHER_TENANT.organization_id, f"p:{wa_id}")
    assert other is not None and UUID(str(other["organization_id"])) == UUID(OTHER_TENANT.organization_id)
    assert await conversation_row(settings, DEMO_TENANT.organization_id, f"p:{wa_id}") is None


async def test_unknown_number_is_recorded_as_unroutable(pipeline, settings) -> None:
    wa_id = new_wa_id()
    response = await post_webhook(pipeline, meta_payloads.text_message("999000999", "Hi", wa_id=wa_id))
    assert response.status_code == 200
    query = {"event_type": "message.unroutable", "payload.original.payload.contact.wa_id": wa_id}
    await eventually(lambda: audit_types(settings, query), lambda types: types == ["message.unroutable"])
    assert await graph_calls(pipeline, wa_id) == []
