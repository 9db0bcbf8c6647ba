"""pytake-router run | migrate | seed-tenant | create-platform-admin | rotate-secrets | generate-secrets-key"""

from __future__ import annotations

import gc

# No cyclic collection while the process starts: imports alone ran it hundreds of times, a fifth
# of a restarted replica's start-up CPU. The service turns it back on, tuned, once it has started
# (pytake_plumbing.service_app.tune_garbage_collector); a CLI command is short-lived.
gc.disable()

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar
from uuid import UUID

import uvicorn
from cryptography.fernet import Fernet
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pytake_plumbing.database import make_engine, make_session_factory, run_migrations

from .adapters.crypto import SecretBox
from .adapters.db.unit_of_work import SqlUnitOfWork
from .adapters.passwords import Argon2Passwords
from .app import MIGRATIONS, SERVICE, create_app
from .service.registry import TenantSeed, create_platform_admin, rotate_secrets, seed_tenant
from .settings import RouterSettings

T = TypeVar("T")


async def _with_sessions(settings: RouterSettings, use: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]
                         ) -> T:
    engine = make_engine(settings.database_url, settings.db_schema(SERVICE))
    try:
        return await use(make_session_factory(engine))
    finally:
        await engine.dispose()


def _box(settings: RouterSettings) -> SecretBox:
    return SecretBox(settings.secrets_keys.get_secret_value())


def _seed(settings: RouterSettings) -> None:
    data = json.load(sys.stdin)
    for key in ("organization_id", "number_id", "chatbot_id", "flow_id"):
        data[key] = UUID(data[key])
    seed = TenantSeed(**data)
    asyncio.run(_with_sessions(settings, lambda sessions: seed_tenant(
        SqlUnitOfWork(sessions), _box(settings), seed, Argon2Passwords())))


def _platform_admin(settings: RouterSettings) -> None:
    data = json.load(sys.stdin)
    user_id = asyncio.run(_with_sessions(settings, lambda sessions: create_platform_admin(
        SqlUnitOfWork(sessions), Argon2Passwords(), data["email"], data["password"], data.get("name", ""))))
    print(json.dumps({"user_id": str(user_id), "email": data["email"].lower(), "role": "platform_admin"}))


def _rotate(settings: RouterSettings) -> None:
    count = asyncio.run(_with_sessions(settings, lambda sessions: rotate_secrets(
        lambda: SqlUnitOfWork(sessions), _box(settings))))
    print(json.dumps({"numbers_reencrypted": count}))


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pytake-router")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve the routing consumer, the management API and the internal API")
    sub.add_parser("migrate", help="upgrade the router's schema")
    sub.add_parser("seed-tenant", help="create or refresh a tenant from JSON on stdin "
                                       "(optional admin_email, admin_password, admin_name)")
    sub.add_parser("create-platform-admin", help='create a platform admin from JSON on stdin: '
                                                 '{"email": ..., "password": ..., "name": ...}')
    sub.add_parser("rotate-secrets", help="re-encrypt every stored secret under the first key of ROUTER_SECRETS_KEYS")
    sub.add_parser("generate-secrets-key", help="print a new key for ROUTER_SECRETS_KEYS")
    args = parser.parse_args(argv)
    if args.command == "generate-secrets-key":
        print(Fernet.generate_key().decode())
        return
    settings = RouterSettings()
    if args.command == "migrate":
        run_migrations(MIGRATIONS, settings.database_url, settings.db_schema(SERVICE))
    elif args.command == "seed-tenant":
        _seed(settings)
    elif args.command == "create-platform-admin":
        _platform_admin(settings)
    elif args.command == "rotate-secrets":
        _rotate(settings)
    else:
        uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None)


if __name__ == "__main__":
    cli()
