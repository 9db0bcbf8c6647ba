"""Helpers for the router's tenancy and routing tests: an in-process management API on
real PostgreSQL (its own schema), and small HTTP conveniences."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pytake_plumbing.auth import AuthSettings
from pytake_flow_engine.app import MIGRATIONS as FLOW_ENGINE_MIGRATIONS
from pytake_flow_engine.app import SERVICE as FLOW_ENGINE
from pytake_flow_engine.app import create_app as create_flow_engine_app
from pytake_flow_engine.settings import FlowEngineSettings
from pytake_plumbing.database import make_engine, make_session_factory, run_migrations
from pytake_router.adapters.db.unit_of_work import SqlUnitOfWork
from pytake_router.adapters.flow_directory import HttpFlowDirectory
from pytake_router.adapters.passwords import Argon2Passwords
from pytake_router.app import MIGRATIONS, SERVICE, create_app
from pytake_router.service.registry import create_platform_admin
from pytake_router.settings import RouterSettings

PLATFORM_EMAIL = "platform@pytake.test"


def new_phone_number_id() -> str:
    return "3" + "".join(secrets.choice("0123456789") for _ in range(14))


@dataclass
class Api:
    """The router's HTTP API in this process; remembers every response body it saw."""

    client: httpx.AsyncClient
    settings: RouterSettings
    platform_password: str
    bodies: list[str] = field(default_factory=list)
    flow_engine: httpx.AsyncClient | None = None  # the flow engine's REST API, where tenants make flows

    async def call(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = await self.client.request(method, path, headers=headers, **kwargs)
        self.bodies.append(response.text)
        return response

    async def login(self, email: str, password: str) -> str:
        response = await self.call("POST", "/api/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def platform_token(self) -> str:
        return await self.login(PLATFORM_EMAIL, self.platform_password)

    async def new_flow(self, token: str, definition: dict[str, Any] | None = None) -> str:
        """A flow of the token's organization, created and published through the flow engine's API."""
        assert self.flow_engine is not None
        headers = {"Authorization": f"Bearer {token}"}
        created = await self.flow_engine.post("/api/v1/flows", headers=headers, json={
            "name": "test flow", "definition": definition or SILENT_FLOW})
        assert created.status_code == 201, created.text
        flow_id = str(created.json()["id"])
        published = await self.flow_engine.post(f"/api/v1/flows/{flow_id}/publish", headers=headers)
        assert published.status_code == 201, published.text
        return flow_id

    async def new_organization(self, slug_prefix: str = "org") -> tuple[str, str]:
        """A fresh organization and the access token of its org_admin."""
        slug = f"{slug_prefix}-{secrets.token_hex(4)}"
        email, password = f"admin@{slug}.test", secrets.token_urlsafe(12)
        response = await self.call("POST", "/api/v1/organizations", await self.platform_token(), json={
            "name": slug.title(), "slug": slug, "admin": {"email": email, "password": password}})
        assert response.status_code == 201, response.text
        return str(response.json()["id"]), await self.login(email, password)

    async def outbox(self) -> list[dict[str, Any]]:
        engine = create_async_engine(self.settings.database_url)
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(text(
                    f'SELECT event FROM "{self.settings.db_schema(SERVICE)}".outbox ORDER BY created_at'))
                return [row[0] for row in rows]
        finally:
            await engine.dispose()


@asynccontextmanager
async def in_process_router(env: dict[str, str], namespace: str, *,
                            flow_engine_url: str | None = None) -> AsyncIterator[Api]:
    """The router app, and the flow engine's app that it asks about chatbots' flows (no Kafka: their
    brokers are not started, so the router's announcements stay in its outbox).

    With `flow_engine_url`, the router asks the flow engine at that address instead (one that is down).
    """
    internal_token = secrets.token_urlsafe(16)
    settings = RouterSettings.model_validate({
        **env, "PYTAKE_NAMESPACE": namespace, "ROUTER_SECRETS_KEYS": Fernet.generate_key().decode(),
        "PYTAKE_INTERNAL_TOKEN": internal_token})
    flow_settings = FlowEngineSettings.model_validate({
        **env, "PYTAKE_NAMESPACE": namespace, "PYTAKE_INTERNAL_TOKEN": internal_token})
    auth = AuthSettings.model_validate({"JWT_SECRET": secrets.token_urlsafe(32)})
    schema = settings.db_schema(SERVICE)
    flow_schema = flow_settings.db_schema(FLOW_ENGINE)
    await asyncio.to_thread(run_migrations, MIGRATIONS, settings.database_url, schema)
    await asyncio.to_thread(run_migrations, FLOW_ENGINE_MIGRATIONS, flow_settings.database_url, flow_schema)
    platform_password = secrets.token_urlsafe(12)
    engine = make_engine(settings.database_url, schema)
    await create_platform_admin(SqlUnitOfWork(make_session_factory(engine)), Argon2Passwords(), PLATFORM_EMAIL,
                                platform_password)
    await engine.dispose()
    flow_engine = create_flow_engine_app(flow_settings, auth, configure_logs=False)
    flow_engine_transport = httpx.ASGITransport(app=flow_engine)
    directory = HttpFlowDirectory(flow_engine_url or "http://flow-engine", internal_token,
                                  transport=None if flow_engine_url else flow_engine_transport)
    app = create_app(settings, auth, configure_logs=False, flow_directory=directory)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router") as client, \
                httpx.AsyncClient(transport=flow_engine_transport, base_url="http://flow-engine") as flows:
            yield Api(client, settings, platform_password, flow_engine=flows)
    finally:
        await directory.close()
        await app.state.engine.dispose()
        await flow_engine.state.engine.dispose()
        drop = create_async_engine(settings.database_url)
        async with drop.begin() as connection:
            for dropped in (schema, flow_schema):
                await connection.execute(text(f'DROP SCHEMA IF EXISTS "{dropped}" CASCADE'))
        await drop.dispose()


SILENT_FLOW = {"nodes": [{"id": "start", "type": "start", "next": "end"}, {"id": "end", "type": "end"}]}


@asynccontextmanager
async def pipeline_router(stack: Any) -> AsyncIterator[Api]:
    """The running pipeline's router over HTTP, with a platform admin made by the router's CLI."""
    password = secrets.token_urlsafe(12)
    await asyncio.to_thread(stack.run_cli, "pytake_router.main", "create-platform-admin",
                            stdin=json.dumps({"email": PLATFORM_EMAIL, "password": password}))
    settings = RouterSettings.model_validate(stack._env())
    async with httpx.AsyncClient(base_url=stack.url("router"), timeout=30.0) as client, \
            httpx.AsyncClient(base_url=stack.url("flow-engine"), timeout=30.0) as flows:
        yield Api(client, settings, password, flow_engine=flows)


async def routed_tenant(api: Api, stack: Any, *, flow: dict[str, Any] | None = None) -> dict[str, Any]:
    """An organization with one number and a default chatbot whose flow is published in the flow engine."""
    org_id, admin = await api.new_organization("routing")
    body = {"phone_number_id": new_phone_number_id(), "display_phone_number": "+1 555 0142",
            "meta_app_id": "5" + "".join(secrets.choice("0123456789") for _ in range(11)),
            "verify_token": "vt-" + secrets.token_hex(12), "app_secret": "as-" + secrets.token_hex(12),
            "access_token": "at-" + secrets.token_hex(12)}
    number = (await api.call("POST", "/api/v1/numbers", admin, json=body)).json()
    flow_id = str(uuid4())
    await asyncio.to_thread(stack.run_cli, "pytake_flow_engine.main", "publish-flow", stdin=json.dumps({
        "organization_id": org_id, "flow_id": flow_id, "name": "routing test", "definition": flow or SILENT_FLOW}))
    chatbot = (await api.call("POST", "/api/v1/chatbots", admin, json={
        "number_id": number["id"], "name": "Bot", "flow_id": flow_id, "is_default": True})).json()
    return {"org_id": org_id, "admin": admin, "number": number, "chatbot": chatbot, "flow_id": flow_id,
            "secrets": {k: body[k] for k in ("verify_token", "app_secret", "access_token")}}
