"""Wiring: the one place the router's parts are put together."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from pytake_plumbing.database import make_engine, make_session_factory
from pytake_plumbing.logs import configure_logging
from pytake_plumbing.messaging import make_broker
from pytake_plumbing.service_app import build_service_app, kafka_reachable
from pytake_plumbing.tracing import configure_tracing

from .adapters.crypto import SecretBox
from .adapters.db.repository import RegistryRepository
from .adapters.db.unit_of_work import SqlUnitOfWork
from .entrypoints import http, kafka
from .service.routing import RouteCache
from .settings import RouterSettings

SERVICE = "router"
MIGRATIONS = Path(__file__).parent / "adapters" / "db" / "migrations"


def create_app(settings: RouterSettings | None = None) -> FastAPI:
    settings = settings or RouterSettings()
    configure_logging(SERVICE, settings.log_level)
    engine = make_engine(settings.database_url, settings.db_schema(SERVICE))
    sessions = make_session_factory(engine)
    box = SecretBox(settings.secrets_keys.get_secret_value())

    async def lookup(phone_number_id: str):  # type: ignore[no-untyped-def]
        async with sessions() as session:
            return await RegistryRepository(session).route_for(phone_number_id)

    cache = RouteCache(lookup, settings.route_cache_ttl_s)
    broker = make_broker(settings, SERVICE, tracer_provider=configure_tracing(SERVICE))
    kafka.register(broker, settings, cache)

    async def kafka_ready() -> bool:
        return await kafka_reachable(broker)

    async def close_db() -> None:
        await engine.dispose()

    app = build_service_app(SERVICE, broker, readiness=[kafka_ready], on_shutdown=[close_db])
    app.include_router(http.internal_router(lambda: SqlUnitOfWork(sessions), box,
                                            settings.internal_token.get_secret_value()))
    app.state.route_cache = cache
    return app
