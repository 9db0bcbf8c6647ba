"""Wiring: the one place the audit service's parts are put together."""

from __future__ import annotations

from fastapi import FastAPI

from pytake_plumbing.logs import configure_logging
from pytake_plumbing.messaging import make_broker
from pytake_plumbing.mongo import make_mongo_client
from pytake_plumbing.service_app import build_service_app, kafka_reachable
from pytake_plumbing.tracing import configure_tracing

from .adapters.mongo_store import AuditStore
from .entrypoints import kafka
from .settings import AuditSettings

SERVICE = "audit"


def create_app(settings: AuditSettings | None = None) -> FastAPI:
    settings = settings or AuditSettings()
    configure_logging(SERVICE, settings.log_level)
    client = make_mongo_client(settings.mongodb_url)
    store = AuditStore(client, settings.mongodb_database)
    broker = make_broker(settings, SERVICE, tracer_provider=configure_tracing(SERVICE))
    kafka.register(broker, settings, store)

    async def close() -> None:
        await client.close()

    async def kafka_ready() -> bool:
        return await kafka_reachable(broker)

    async def mongo_ready() -> bool:
        try:
            await client.admin.command("ping")
            return True
        except Exception:
            return False

    return build_service_app(SERVICE, broker, on_startup=[store.ensure_indexes], on_shutdown=[close],
                             readiness=[kafka_ready, mongo_ready])
