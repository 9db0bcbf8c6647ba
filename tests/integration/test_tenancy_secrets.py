"""Secrets stay secret: a full flow (management API, webhook, routing, flow, sending with
the number's decrypted access token) leaves none of them in any service's log, in any
API response, or in plain text in the database."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pytake_devstack import meta_payloads
from pytake_devstack.demo_tenant import DEMO_FLOW, DEMO_TENANT

from .tenancy_support import Api, pipeline_router, routed_tenant
from .waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def api(pipeline) -> AsyncIterator[Api]:
    async with pipeline_router(pipeline) as running:
        yield running


async def graph_calls(stack, recipient: str) -> list[dict]:
    async with httpx.AsyncClient() as client:
        calls = (await client.get(f"{stack.url('fake-graph-api')}/_fake/calls")).json()
    return [c for c in calls if recipient in (c["body"].get("to"), c["body"].get("recipient"))]


async def test_no_secret_in_logs_responses_or_database(pipeline, settings, api) -> None:
    tenant = await routed_tenant(api, pipeline, flow=DEMO_FLOW)
    admin, number = tenant["admin"], tenant["number"]
    # The pipeline's gateway runs in demo mode: it checks signatures with the demo secret of its own.
    app_secret = DEMO_TENANT.app_secret
    access_token = "at-" + secrets.token_hex(16)
    changed = await api.call("PATCH", f"/api/v1/numbers/{number['id']}", admin, json={"access_token": access_token})
    assert changed.status_code == 200
    password = "pw-" + secrets.token_hex(12)
    email = f"agent-{secrets.token_hex(3)}@secrets.test"
    await api.call("POST", "/api/v1/users", admin, json={"email": email, "password": password, "role": "agent"})
    login = (await api.call("POST", "/api/v1/auth/login", json={"email": email, "password": password})).json()
    await api.call("POST", "/api/v1/auth/login", json={"email": email, "password": password + "-wrong"})
    refreshed = (await api.call("POST", "/api/v1/auth/refresh", json={"refresh_token": login["refresh_token"]}))

    # A customer writes; the bot answers through the fake Graph API with the number's new token.
    wa_id = "1555" + "".join(secrets.choice("0123456789") for _ in range(7))
    body = meta_payloads.encode(meta_payloads.text_message(number["phone_number_id"], "Hi", wa_id=wa_id))
    async with httpx.AsyncClient() as client:
        posted = await client.post(f"{pipeline.url('gateway')}/api/v1/webhooks/whatsapp", content=body, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": meta_payloads.sign(body, app_secret)})
    assert posted.status_code == 200
    calls = await eventually(lambda: graph_calls(pipeline, wa_id), lambda found: len(found) >= 1)
    assert calls[0]["authorization"] == f"Bearer {access_token}"  # the flow really used the secret

    hidden = {
        "access_token": access_token,
        "first access_token": tenant["secrets"]["access_token"],
        "verify_token": tenant["secrets"]["verify_token"],
        "first app_secret": tenant["secrets"]["app_secret"],
        "password": password,
        "refresh_token": login["refresh_token"],
        "new refresh_token": refreshed.json()["refresh_token"],
    }
    # Every service's log, the router replicas' included (the fake Graph API plays Meta: not ours).
    logs = [p for p in Path(pipeline.log_dir).rglob("*.log") if p.name != "fake-graph-api.log"]
    assert any(p.name == "router.log" for p in logs) and any(p.name == "sender.log" for p in logs)
    router_log = (Path(pipeline.log_dir) / "router.log").read_text()
    assert changed.headers["x-correlation-id"] in router_log  # our API calls are in the captured logs
    found_in_logs = {(name, p.name) for p in logs for name, value in hidden.items() if value in p.read_text()}
    assert found_in_logs == set()
    # The demo app secret must not be logged either (it is also in the gateway's demo settings).
    assert not [p.name for p in logs if app_secret in p.read_text()]

    # Responses: only login and refresh hand out a (refresh) token; nothing else comes back.
    handed_out = {"refresh_token", "new refresh_token"}
    assert [name for name, value in hidden.items()
            if name not in handed_out and any(value in body for body in api.bodies)] == []

    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(text(
                f'SELECT verify_token_enc, app_secret_enc, access_token_enc FROM '
                f'"{settings.db_schema("router")}".whatsapp_numbers WHERE id = :id'), {"id": number["id"]})).all()
            users = (await connection.execute(text(
                f'SELECT password_hash FROM "{settings.db_schema("router")}".users WHERE email = :email'),
                {"email": email})).all()
    finally:
        await engine.dispose()
    stored = b"".join(bytes(column) for column in rows[0])
    assert access_token.encode() not in stored and tenant["secrets"]["app_secret"].encode() not in stored
    assert users[0][0].startswith("$argon2id$") and password not in users[0][0]
