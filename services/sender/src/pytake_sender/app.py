"""Wiring: the one place the sender's parts are put together."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from pytake_plumbing.database import make_engine, make_session_factory
from pytake_plumbing.logs import configure_logging
from pytake_plumbing.messaging import make_broker
from pytake_plumbing.service_app import build_service_app, kafka_reachable
from pytake_plumbing.tracing import configure_tracing

from .adapters.credentials import RegistryCredentials
from .adapters.db.repository import DeliveryRepository
from .adapters.graph_api import GraphApiClient
from .entrypoints import kafka
from .service.send import RetryPolicy
from .settings import SenderSettings

SERVICE = "sender"
MIGRATIONS = Path(__file__).parent / "adapters" / "db" / "migrations"


def create_app(settings: SenderSettings | None = None) -> FastAPI:
    settings = settings or SenderSettings()
    configure_logging(SERVICE, settings.log_level)
    engine = make_engine(settings.database_url, settings.db_schema(SERVICE))
    graph = GraphApiClient(settings.graph_api_base_url, settings.graph_api_version, settings.graph_api_timeout_s)
    credentials = RegistryCredentials(settings.router_internal_url, settings.internal_token.get_secret_value())
    broker = make_broker(settings, SERVICE, tracer_provider=configure_tracing(SERVICE))
    kafka.register(broker, settings, graph, credentials, DeliveryRepository(make_session_factory(engine)),
                   RetryPolicy(settings.max_attempts, settings.backoff_base_s, settings.backoff_max_s))

    async def close() -> None:
        await graph.close()
        await credentials.close()
        await engine.dispose()

    async def kafka_ready() -> bool:
        return await kafka_reachable(broker)

    return build_service_app(SERVICE, broker, readiness=[kafka_ready], on_shutdown=[close])
