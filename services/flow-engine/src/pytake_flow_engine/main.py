"""pytake-flow-engine run | migrate | publish-flow | simulate"""

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
from dataclasses import asdict
from pathlib import Path
from typing import Any
from uuid import UUID

import uvicorn

from pytake_plumbing.database import make_engine, make_session_factory, run_migrations

from .adapters.db.unit_of_work import SqlUnitOfWork
from .adapters.http_client import SafeHttpClient, parse_networks
from .app import MIGRATIONS, SERVICE, create_app, engine_limits, utc_clock
from .domain.executor import HttpAnswer, HttpCall, Inbound, LoadedFlow
from .domain.flow import check_definition
from .service.conversations import ConversationEngine
from .service.flows import FlowService, publish_flow, simulate
from .settings import FlowEngineSettings


async def _publish(settings: FlowEngineSettings, data: dict) -> int:
    engine = make_engine(settings.database_url, settings.db_schema(SERVICE))
    try:
        return await publish_flow(SqlUnitOfWork(make_session_factory(engine)), UUID(data["organization_id"]),
                                  UUID(data["flow_id"]), data["name"], data["definition"])
    finally:
        await engine.dispose()


class _NoJumps:
    """Runtime for a flow file: HTTP as configured, no other flows to jump to."""

    def __init__(self, http: SafeHttpClient) -> None:
        self._http = http

    async def http(self, call: HttpCall) -> HttpAnswer:
        return await self._http(call)

    async def load_flow(self, flow_id: UUID) -> LoadedFlow | None:
        return None


async def _simulate(settings: FlowEngineSettings, args: argparse.Namespace) -> dict[str, Any]:
    inputs = [Inbound(text=text) for text in args.input]
    http_client = SafeHttpClient(parse_networks(settings.http_allowed_networks))
    db = make_engine(settings.database_url, settings.db_schema(SERVICE))
    try:
        uow = lambda: SqlUnitOfWork(make_session_factory(db))  # noqa: E731
        engine = ConversationEngine(uow, utc_clock, settings.topic, http_client, limits=engine_limits(settings))
        if args.file:
            checked, errors = check_definition(json.loads(Path(args.file).read_text()))
            if checked is None:
                return {"valid": False, "errors": errors}
            loaded = LoadedFlow(UUID(int=0), 0, checked)
            result = await simulate(loaded, inputs, utc_clock(), _NoJumps(http_client), engine)
        else:
            result = await FlowService(uow, engine, utc_clock).simulate(
                UUID(args.organization_id), UUID(args.flow_id), args.version, inputs)
        return asdict(result)
    finally:
        await http_client.close()
        await db.dispose()


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pytake-flow-engine")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="serve the conversation consumer and the REST API")
    sub.add_parser("migrate", help="upgrade the flow engine's schema")
    sub.add_parser("publish-flow", help="publish a flow version from JSON on stdin")
    sim = sub.add_parser("simulate", help="run a flow against scripted customer messages (no Kafka, no WhatsApp)")
    sim.add_argument("--file", help="a flow definition (JSON file) to simulate without any database")
    sim.add_argument("--organization-id", help="with --flow-id and --version: a published version")
    sim.add_argument("--flow-id")
    sim.add_argument("--version", type=int)
    sim.add_argument("--input", action="append", default=[], help="a customer message (repeat, in order)")
    args = parser.parse_args(argv)
    settings = FlowEngineSettings()
    if args.command == "migrate":
        run_migrations(MIGRATIONS, settings.database_url, settings.db_schema(SERVICE))
    elif args.command == "publish-flow":
        version = asyncio.run(_publish(settings, json.load(sys.stdin)))
        print(json.dumps({"version": version}))
    elif args.command == "simulate":
        if not args.file and not (args.organization_id and args.flow_id and args.version):
            parser.error("simulate needs --file, or --organization-id, --flow-id and --version")
        if not args.input:
            parser.error("simulate needs at least one --input")
        print(json.dumps(asyncio.run(_simulate(settings, args)), indent=2, default=str))
    else:
        uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None)


if __name__ == "__main__":
    cli()
