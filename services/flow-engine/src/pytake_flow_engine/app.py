"""Wiring: the one place the flow engine's parts are put together."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI

from pytake_plumbing.auth import AuthSettings
from pytake_plumbing.database import make_engine, make_session_factory
from pytake_plumbing.logs import configure_logging, get_logger
from pytake_plumbing.record_producer import RecordProducer
from pytake_plumbing.revocations import RevocationView, revocation_feed
from pytake_plumbing.service_app import build_service_app
from pytake_plumbing.tracing import configure_tracing

from .adapters.db.unit_of_work import SqlUnitOfWork
from .adapters.http_client import SafeHttpClient, parse_networks
from .entrypoints import http, internal, kafka
from .entrypoints.kafka import flush
from .service.conversations import ConversationEngine, EngineLimits
from .service.flows import FlowService
from .service.outbox_relay import OutboxRelay
from .settings import FlowEngineSettings

SERVICE = "flow-engine"
MIGRATIONS = Path(__file__).parent / "adapters" / "db" / "migrations"
log = get_logger(__name__)


def utc_clock() -> datetime:
    return datetime.now(UTC)


def engine_limits(settings: FlowEngineSettings) -> EngineLimits:
    return EngineLimits(max_iterations=settings.max_flow_iterations,
                        execution_timeout_s=settings.flow_execution_timeout_ms / 1000,
                        session_ttl_hours=settings.session_ttl_hours)


async def _every(interval_s: float, work: Callable[[], Awaitable[object]], name: str) -> None:
    while True:
        try:
            await work()
        except Exception as exc:  # keep going once the dependency is back
            log.warning(f"{name}_failed", error=repr(exc)[:300])
        await asyncio.sleep(interval_s)


def create_app(settings: FlowEngineSettings | None = None, auth: AuthSettings | None = None, *,
               configure_logs: bool = True) -> FastAPI:
    settings = settings or FlowEngineSettings()
    if configure_logs:
        configure_logging(SERVICE, settings.log_level)
    db = make_engine(settings.database_url, settings.db_schema(SERVICE))
    sessions = make_session_factory(db)

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(sessions)

    http_client = SafeHttpClient(parse_networks(settings.http_allowed_networks))
    engine = ConversationEngine(uow, utc_clock, settings.topic, http_client, limits=engine_limits(settings))
    flows = FlowService(uow, engine, utc_clock)
    configure_tracing(SERVICE)
    producer = RecordProducer(settings, f"pytake-{SERVICE}")
    relay = OutboxRelay(uow, producer, utc_clock)
    consumers = kafka.consumers(settings, engine, relay, dead_letters=producer)
    tasks: list[asyncio.Task[None]] = []

    async def wake_and_publish() -> None:
        if await engine.wake_due():
            await relay.flush()

    async def start_background() -> None:
        tasks.append(asyncio.create_task(relay.run_forever(settings.outbox_interval_s)))
        tasks.append(asyncio.create_task(_every(settings.wake_interval_s, wake_and_publish, "delay_poller")))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await http_client.close()
        await db.dispose()

    auth = auth or AuthSettings()
    revocations = RevocationView(auth.access_ttl_s)
    feed = revocation_feed(settings, revocations, auth.access_ttl_s)
    app = build_service_app(SERVICE, producer, readiness=[feed.ready], on_startup=[feed.start],
                            on_started=[*(consumer.start for consumer in consumers), start_background],
                            on_stopping=[consumer.stop for consumer in consumers],
                            on_shutdown=[feed.stop, stop])
    app.include_router(http.build_router(flows, engine, auth, lambda: flush(relay), revocations))
    token = settings.internal_token.get_secret_value() if settings.internal_token else None
    app.include_router(internal.internal_router(flows, token))
    app.state.engine = db
    return app
