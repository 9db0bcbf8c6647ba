"""Wiring: the one place the audit service's parts are put together."""

from __future__ import annotations

from fastapi import FastAPI

from pytake_plumbing.auth import AuthSettings
from pytake_plumbing.logs import configure_logging
from pytake_plumbing.mongo import make_mongo_client
from pytake_plumbing.record_producer import RecordProducer
from pytake_plumbing.revocations import RevocationView, revocation_feed
from pytake_plumbing.service_app import build_service_app
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
    configure_tracing(SERVICE)
    producer = RecordProducer(settings, f"pytake-{SERVICE}")  # dead letters
    consumers = kafka.consumers(settings, store, retention, producer)

    async def start_sweeper() -> None:
        if store.ttl_supported is False:
            sweeper.start()

    async def close() -> None:
        await sweeper.stop()
        await client.close()

    async def mongo_ready() -> bool:
        try:
            await client.admin.command("ping")
            return True
        except Exception:
            return False

    revocations = RevocationView(auth.access_ttl_s)
    feed = revocation_feed(settings, revocations, auth.access_ttl_s)
    app = build_service_app(SERVICE, producer, on_startup=[store.ensure_indexes, feed.start],
                            on_started=[*(c.start for c in consumers), start_sweeper],
                            on_stopping=[c.stop for c in consumers],
                            on_shutdown=[feed.stop, close], readiness=[mongo_ready, feed.ready])
    app.include_router(http.build_router(AuditQueryService(AuditQueries(client, database)),
                                         RetentionService(retention_repository, retention), auth, revocations))
    return app
