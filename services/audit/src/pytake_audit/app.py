"""Wiring: the one place the audit service's parts are put together."""

from __future__ import annotations

from fastapi import FastAPI

from pytake_plumbing.auth import AuthSettings
from pytake_plumbing.logs import configure_logging
from pytake_plumbing.messaging import make_broker
from pytake_plumbing.mongo import make_mongo_client
from pytake_plumbing.revocations import RevocationFeed, RevocationView
from pytake_plumbing.service_app import build_service_app, kafka_reachable
from pytake_plumbing.tracing import configure_tracing

from .adapters.mongo_store import AuditQueries, AuditStore, RetentionRepository
from .entrypoints import http, kafka
from .service.queries import AuditQueryService, RetentionService
from .service.record import RetentionPolicy
from .service.sweeper import ExpirySweeper
from .settings import AuditSettings

SERVICE = "audit"


def create_app(settings: AuditSettings | None = None, auth: AuthSettings | None = None) -> FastAPI:
    settings = settings or AuditSettings()
    auth = auth or AuthSettings()
    configure_logging(SERVICE, settings.log_level)
    client = make_mongo_client(settings.mongodb_url)
    database = settings.mongodb_database
    store = AuditStore(client, database)
    retention_repository = RetentionRepository(client, database)
    retention = RetentionPolicy(retention_repository, settings.default_retention_days, settings.retention_refresh_s)
    sweeper = ExpirySweeper(store, settings.sweep_interval_s)
    broker = make_broker(settings, SERVICE, tracer_provider=configure_tracing(SERVICE))
    consumer = kafka.register(broker, settings, store, retention)

    async def start_sweeper() -> None:
        if store.ttl_supported is False:
            sweeper.start()

    async def close() -> None:
        await sweeper.stop()
        await client.close()

    async def kafka_ready() -> bool:
        return await kafka_reachable(broker)

    async def mongo_ready() -> bool:
        try:
            await client.admin.command("ping")
            return True
        except Exception:
            return False

    revocations = RevocationView(auth.access_ttl_s)
    feed = RevocationFeed(settings, revocations, auth.access_ttl_s)
    app = build_service_app(SERVICE, broker, on_startup=[store.ensure_indexes, feed.start],
                            on_started=[consumer.start, start_sweeper], on_stopping=[consumer.stop],
                            on_shutdown=[feed.stop, close], readiness=[kafka_ready, mongo_ready, feed.ready])
    app.include_router(http.build_router(AuditQueryService(AuditQueries(client, database)),
                                         RetentionService(retention_repository, retention), auth, revocations))
    return app
