"""Wiring: the one place the gateway's parts are put together."""

from __future__ import annotations

from fastapi import FastAPI
from faststream.kafka import KafkaBroker

from pytake_plumbing.logs import configure_logging
from pytake_plumbing.messaging import EventPublisher, make_broker
from pytake_plumbing.service_app import build_service_app, kafka_reachable
from pytake_plumbing.tracing import configure_tracing

from .adapters.kafka_sink import KafkaEventSink
from .adapters.secrets import DemoSecretSource
from .entrypoints.http import webhook_router
from .service.ingest import SecretSource
from .settings import GatewaySettings

SERVICE = "gateway"


def create_app(settings: GatewaySettings | None = None, *, secrets: SecretSource | None = None,
               broker: KafkaBroker | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    configure_logging(SERVICE, settings.log_level)
    broker = broker or make_broker(settings, SERVICE, tracer_provider=configure_tracing(SERVICE))
    sink = KafkaEventSink(EventPublisher(broker, settings), settings.publish_timeout_s)

    async def kafka_ready() -> bool:
        return await kafka_reachable(broker)

    app = build_service_app(SERVICE, broker, readiness=[kafka_ready])
    app.include_router(webhook_router(secrets or DemoSecretSource(settings), sink, settings.max_body_bytes))
    app.state.broker = broker
    return app
