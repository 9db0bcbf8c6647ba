"""Rotating ROUTER_SECRETS_KEYS: put the new key first, run `rotate-secrets`, then drop the
old key. Done here with the real CLI on a schema of its own."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from uuid import uuid4

import httpx
import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pytake_plumbing.auth import AuthSettings
from pytake_router.app import create_app
from pytake_router.settings import RouterSettings

pytestmark = pytest.mark.integration


def router_cli(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "pytake_router.main", *args], env={**os.environ, **env},
                            input=stdin, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


async def stored_tokens(settings: RouterSettings) -> list[bytes]:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(text(
                f'SELECT verify_token_enc, app_secret_enc, access_token_enc FROM '
                f'"{settings.db_schema("router")}".whatsapp_numbers'))).all()
        return [bytes(token) for row in rows for token in row]
    finally:
        await engine.dispose()


def opens_with(key: bytes, token: bytes) -> bool:
    try:
        Fernet(key).decrypt(token)
        return True
    except InvalidToken:
        return False


async def test_secrets_move_to_the_new_key_and_the_old_one_can_go(servers, namespace) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    internal = secrets.token_urlsafe(12)
    env = {**servers.env, "PYTAKE_NAMESPACE": f"{namespace}_rot", "PYTAKE_INTERNAL_TOKEN": internal,
           "ROUTER_SECRETS_KEYS": old.decode()}
    seed = {"organization_id": str(uuid4()), "organization_name": "Rotation", "slug": "rotation",
            "number_id": str(uuid4()), "phone_number_id": "600000000000001", "display_phone_number": "+1 555 0600",
            "meta_app_id": "600", "verify_token": "rot-verify-" + secrets.token_hex(6),
            "app_secret": "rot-app-" + secrets.token_hex(6), "access_token": "rot-access-" + secrets.token_hex(6),
            "chatbot_id": str(uuid4()), "chatbot_name": "Bot", "flow_id": str(uuid4()),
            "admin_email": "admin@rotation.test", "admin_password": "rotation-admin-1"}
    settings = RouterSettings.model_validate(env)
    try:
        await asyncio.to_thread(router_cli, env, "migrate")
        await asyncio.to_thread(router_cli, env, "seed-tenant", stdin=json.dumps(seed))
        before = await stored_tokens(settings)
        assert len(before) == 3 and all(opens_with(old, t) and not opens_with(new, t) for t in before)

        # Step 1: new key first, old key still listed; step 2: re-encrypt everything.
        rotating = {**env, "ROUTER_SECRETS_KEYS": f"{new.decode()},{old.decode()}"}
        out = await asyncio.to_thread(router_cli, rotating, "rotate-secrets")
        assert json.loads(out) == {"numbers_reencrypted": 1}
        after = await stored_tokens(settings)
        assert all(opens_with(new, t) and not opens_with(old, t) for t in after)

        # Step 3: the old key is removed; the registry still reads every secret.
        app = create_app(RouterSettings.model_validate({**env, "ROUTER_SECRETS_KEYS": new.decode()}),
                         AuthSettings.model_validate({"JWT_SECRET": secrets.token_urlsafe(32)}), configure_logs=False)
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://router") as client:
                headers = {"X-Internal-Token": internal}
                creds = (await client.get("/internal/v1/meta-apps/600/webhook-credentials", headers=headers)).json()
                assert creds["app_secrets"] == [seed["app_secret"]]
                assert creds["verify_tokens"] == [seed["verify_token"]]
                token = await client.get(f"/internal/v1/organizations/{seed['organization_id']}/numbers/"
                                         f"{seed['phone_number_id']}/credentials", headers=headers)
                assert token.json()["access_token"] == seed["access_token"]
                # seed-tenant's optional admin can log in.
                login = await client.post("/api/v1/auth/login", json={"email": seed["admin_email"],
                                                                      "password": seed["admin_password"]})
                assert login.status_code == 200
        finally:
            await app.state.engine.dispose()
        # Rotating again is harmless (idempotent), and the old key alone now reads nothing.
        assert json.loads(await asyncio.to_thread(router_cli, {**env, "ROUTER_SECRETS_KEYS": new.decode()},
                                                  "rotate-secrets")) == {"numbers_reencrypted": 1}
        assert not any(opens_with(old, t) for t in await stored_tokens(settings))
    finally:
        engine = create_async_engine(settings.database_url)
        async with engine.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{settings.db_schema("router")}" CASCADE'))
        await engine.dispose()
