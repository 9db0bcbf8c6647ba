"""pytake-router run | migrate | seed-tenant"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from uuid import UUID

import uvicorn

from pytake_plumbing.database import make_engine, make_session_factory, run_migrations

from .adapters.crypto import SecretBox
from .adapters.db.unit_of_work import SqlUnitOfWork
from .app import MIGRATIONS, SERVICE, create_app
from .service.registry import TenantSeed, seed_tenant
from .settings import RouterSettings


async def _seed(settings: RouterSettings, seed: TenantSeed) -> None:
    engine = make_engine(settings.database_url, settings.db_schema(SERVICE))
    try:
        await seed_tenant(SqlUnitOfWork(make_session_factory(engine)),
                          SecretBox(settings.secrets_keys.get_secret_value()), seed)
    finally:
        await engine.dispose()


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pytake-router")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve the routing consumer and the internal API")
    sub.add_parser("migrate", help="upgrade the router's schema")
    sub.add_parser("seed-tenant", help="create or refresh a tenant from JSON on stdin")
    args = parser.parse_args(argv)
    settings = RouterSettings()
    if args.command == "migrate":
        run_migrations(MIGRATIONS, settings.database_url, settings.db_schema(SERVICE))
    elif args.command == "seed-tenant":
        data = json.load(sys.stdin)
        for key in ("organization_id", "number_id", "chatbot_id", "flow_id"):
            data[key] = UUID(data[key])
        asyncio.run(_seed(settings, TenantSeed(**data)))
    else:
        uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None)


if __name__ == "__main__":
    cli()
