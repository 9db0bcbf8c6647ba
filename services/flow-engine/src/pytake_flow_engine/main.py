"""pytake-flow-engine run | migrate | publish-flow"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from uuid import UUID

import uvicorn

from pytake_plumbing.database import make_engine, make_session_factory, run_migrations

from .adapters.db.unit_of_work import SqlUnitOfWork
from .app import MIGRATIONS, SERVICE, create_app
from .service.flows import publish_flow
from .settings import FlowEngineSettings


async def _publish(settings: FlowEngineSettings, data: dict) -> int:
    engine = make_engine(settings.database_url, settings.db_schema(SERVICE))
    try:
        return await publish_flow(SqlUnitOfWork(make_session_factory(engine)), UUID(data["organization_id"]),
                                  UUID(data["flow_id"]), data["name"], data["definition"])
    finally:
        await engine.dispose()


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pytake-flow-engine")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve the conversation consumer")
    sub.add_parser("migrate", help="upgrade the flow engine's schema")
    sub.add_parser("publish-flow", help="publish a flow version from JSON on stdin")
    args = parser.parse_args(argv)
    settings = FlowEngineSettings()
    if args.command == "migrate":
        run_migrations(MIGRATIONS, settings.database_url, settings.db_schema(SERVICE))
    elif args.command == "publish-flow":
        version = asyncio.run(_publish(settings, json.load(sys.stdin)))
        print(json.dumps({"version": version}))
    else:
        uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None)


if __name__ == "__main__":
    cli()
