"""Wiring: the one place the flow engine's parts are put together."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI

from pytake_plumbing.database import make_engine, make_session_factory
from pytake_plumbing.logs import configure_logging
from pytake_plumbing.messaging import make_broker
from pytake_plumbing.service_app import build_service_app, kafka_reachable
from pytake_plumbing.tracing import configure_tracing

from .adapters.db.unit_of_work import SqlUnitOfWork
from .entrypoints import kafka
from .service.outbox_relay import OutboxRelay
from .settings import FlowEngineSettings

SERVICE = "flow-engine"
MIGRATIONS = Path(__file__).parent / "adapters" / "db" / "migrations"


def utc_clock() -> datetime:
    return datetime.now(UTC)


def create_app(settings: FlowEngineSettings | None = None) -> FastAPI:
    settings = settings or FlowEngineSettings()
    configure_logging(SERVICE, settings.log_level)
    engine = make_engine(settings.database_url, settings.db_schema(SERVICE))
    sessions = make_session_factory(engine)

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(sessions)

    broker = make_broker(settings, SERVICE, tracer_provider=configure_tracing(SERVICE))
    relay = OutboxRelay(uow, broker, utc_clock)
    kafka.register(broker, settings, uow, relay, utc_clock)
    tasks: list[asyncio.Task[None]] = []

    async def start_relay() -> None:
        tasks.append(asyncio.create_task(relay.run_forever(settings.outbox_interval_s)))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await engine.dispose()

    async def kafka_ready() -> bool:
        return await kafka_reachable(broker)

    return build_service_app(SERVICE, broker, readiness=[kafka_ready], on_started=[start_relay], on_shutdown=[stop])
