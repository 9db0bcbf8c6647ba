"""Fixtures for PyTake's integration tests: real servers, one namespace per run."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from pytake_plumbing.messaging import delete_namespace_topics, ensure_topics
from pytake_plumbing.settings import CommonSettings

from .demo_tenant import DEMO_FLOW, DEMO_TENANT
from .paths import STATE_DIR
from .servers import Servers, ensure_servers
from .stack import Stack, Tenant, free_ports

OTHER_TENANT = Tenant(
    organization_id="5b1e0f7e-2222-4c1a-8d7e-000000000001",
    organization_name="Other Org",
    slug="other-org",
    number_id="5b1e0f7e-2222-4c1a-8d7e-000000000002",
    phone_number_id="200000000000002",
    display_phone_number="+1 555 0200",
    meta_app_id="900000000000001",
    verify_token="other-verify-token",
    app_secret=DEMO_TENANT.app_secret,  # same Meta app, another business
    access_token="other-access-token",
    chatbot_id="5b1e0f7e-2222-4c1a-8d7e-000000000003",
    chatbot_name="Other bot",
    flow_id="5b1e0f7e-2222-4c1a-8d7e-000000000004",
    flow_name="Other flow",
    flow=DEMO_FLOW,
)


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    started = ensure_servers()
    try:
        yield started
    finally:
        started.stop_started()


@pytest.fixture(scope="session")
def namespace() -> str:
    return "t" + secrets.token_hex(4)


@pytest.fixture(scope="session")
def settings(servers: Servers, namespace: str) -> CommonSettings:
    return CommonSettings.model_validate({**servers.env, "PYTAKE_NAMESPACE": namespace})


@pytest.fixture(scope="session")
async def topics(settings: CommonSettings) -> AsyncIterator[CommonSettings]:
    await ensure_topics(settings)
    yield settings
    await delete_namespace_topics(settings)


def pipeline_env(servers_env: dict[str, str], namespace: str) -> dict[str, str]:
    """Environment of a test stack: its own namespace and secrets, demo webhook secrets, quick retries."""
    return {
        **servers_env,
        "PYTAKE_NAMESPACE": namespace,
        "ROUTER_SECRETS_KEYS": Fernet.generate_key().decode(),
        "PYTAKE_INTERNAL_TOKEN": secrets.token_urlsafe(16),
        "JWT_SECRET": secrets.token_urlsafe(32),
        "GATEWAY_SECRETS_SOURCE": "demo",
        "GATEWAY_DEMO_APP_SECRET": DEMO_TENANT.app_secret,
        "GATEWAY_DEMO_VERIFY_TOKEN": DEMO_TENANT.verify_token,
        "SENDER_BACKOFF_BASE_S": "0.05",
        # Every test client logs in from 127.0.0.1, fuzzers and wrong-password tests included: one
        # address's allowance would otherwise depend on the order tests run in. Per-account limits
        # stay as they are; tests/integration/test_router_login_throttle.py covers both.
        "ROUTER_LOGIN_ADDRESS_MAX_FAILURES": "100000",
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture(scope="session")
def pipeline(servers: Servers, settings: CommonSettings, namespace: str) -> Iterator[Stack]:
    """The five services and the fake Graph API as real processes, in this run's namespace."""
    env = pipeline_env(servers.env, namespace)
    ports = free_ports()
    stack = Stack(env=env, log_dir=Path(STATE_DIR) / "test-logs" / namespace, ports=ports)
    stack.prepare([DEMO_TENANT, OTHER_TENANT])
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        asyncio.run(_drop_namespace(settings))


async def _drop_namespace(settings: CommonSettings) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from pytake_plumbing.mongo import make_mongo_client

    engine = create_async_engine(settings.database_url)
    async with engine.begin() as connection:
        for service in ("router", "flow-engine", "sender", "gateway"):
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{settings.db_schema(service)}" CASCADE'))
    await engine.dispose()
    client = make_mongo_client(settings.mongodb_url)
    await client.drop_database(settings.mongodb_database)
    await client.close()
    await delete_namespace_topics(settings)
