"""Wiring: the one place the gateway's parts are put together."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Protocol

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp

from pytake_contracts.topics import INTAKE_RECORD_MAX_BYTES
from pytake_plumbing.consumer import Consumer, DeadLetterSink, RecordSource
from pytake_plumbing.logs import configure_logging, get_logger
from pytake_plumbing.record_producer import RecordProducer
from pytake_plumbing.service_app import Producer, build_service_app
from pytake_plumbing.tracing import configure_tracing

from .adapters.db.receipts import PostgresReceiptStore
from .adapters.kafka_sink import KafkaEventSink
from .adapters.memory_receipts import InMemoryReceiptStore
from .adapters.metrics import ForwarderMetrics, GatewayMetrics
from .adapters.secrets import DemoSecretSource, RegistrySecretSource
from .domain.rate_limit import TokenBucketLimiter
from .entrypoints import forwarder, kafka
from .entrypoints.http import WebhookEndpoints, WebhookFastPath, is_webhook_post, metrics_router, webhook_router
from .service.forward import ReceiptStore, ReceiptsUnavailable
from .service.ingest import EventSink, SecretSource, WebhookIngestor
from .settings import GatewaySettings

SERVICE = "gateway"
FORWARDER = "gateway-forwarder"
MIGRATIONS = Path(__file__).parent / "adapters" / "db" / "migrations"

log = get_logger(__name__)


def create_app(settings: GatewaySettings | None = None, *, secrets: SecretSource | None = None,
               producer: GatewayProducer | None = None, source: RecordSource | None = None) -> FastAPI:
    """The front door: Meta's webhooks, stored in the intake topic before they are acknowledged.

    Unit tests pass an in-memory `producer`, and a `source` for the registry changes.
    """
    settings = settings or GatewaySettings()
    configure_logging(SERVICE, settings.log_level)
    configure_tracing(SERVICE)
    # A short linger lets one produce request carry the records of many concurrent webhooks:
    # the broker's cost is per request, and a few ms are well inside Meta's patience.
    producer = producer or RecordProducer(settings, f"pytake-{SERVICE}", linger_ms=settings.publish_linger_ms,
                                          max_record_bytes=INTAKE_RECORD_MAX_BYTES)
    on_shutdown: list = []
    sink = KafkaEventSink(producer, settings.publish_timeout_s)

    if secrets is None:
        secrets, close_secrets = _secret_source(settings)
        on_shutdown.append(close_secrets)
    consumers: list[Consumer] = []
    if isinstance(secrets, RegistrySecretSource):
        consumers = kafka.consumers(settings, secrets, source)

    # FastAPI's spans (server, dependencies, endpoint, serialisation) cost more per webhook
    # than its durable publish: the webhook POST has one span of its own (WebhookFastPath).
    app = build_service_app(SERVICE, producer,
                            on_started=[c.start for c in consumers], on_stopping=[c.stop for c in consumers],
                            on_shutdown=on_shutdown,
                            telemetry={"operation_spans": False, "exclude": is_webhook_post})
    metrics = GatewayMetrics()
    limiter = TokenBucketLimiter(settings.rate_limit_per_s, settings.rate_limit_burst, time.monotonic)
    ingestor = WebhookIngestor(secrets, sink)
    endpoints = WebhookEndpoints(ingestor, limiter, metrics, settings.max_body_bytes)
    app.include_router(webhook_router(endpoints))
    app.include_router(metrics_router(metrics))
    app.state.webhooks = endpoints
    app.state.metrics = metrics
    app.state.secrets = secrets
    return app


def serving_app(app: FastAPI) -> ASGIApp:
    """What the server runs: webhook POSTs take the fast path, everything else goes through FastAPI."""
    return WebhookFastPath(app, app.state.webhooks)


def _secret_source(settings: GatewaySettings):  # noqa: ANN202 - (source, closer)
    if settings.secrets_source == "demo":
        async def nothing() -> None:
            return None
        return DemoSecretSource(settings), nothing
    if settings.internal_token is None:
        raise SystemExit("GATEWAY_SECRETS_SOURCE=registry needs PYTAKE_INTERNAL_TOKEN")
    client = httpx.AsyncClient(base_url=settings.router_internal_url, timeout=settings.registry_timeout_s)
    source = RegistrySecretSource(client, settings.internal_token.get_secret_value(), time.monotonic,
                                  ttl_s=settings.secrets_cache_ttl_s, unknown_ttl_s=settings.unknown_app_cache_ttl_s)
    return source, client.aclose


def create_forwarder_app(settings: GatewaySettings | None = None, *, receipts: ReceiptStore | None = None,
                         producer: GatewayProducer | None = None, source: RecordSource | None = None) -> FastAPI:
    """Behind the front door: stored webhooks split into events, each passed downstream once."""
    settings = settings or GatewaySettings()
    configure_logging(FORWARDER, settings.log_level)
    configure_tracing(FORWARDER)
    # The forwarder waits as long as Kafka takes (the producer reports a failure after its
    # delivery timeout): a batch is committed only once every event of it is acknowledged.
    producer = producer or RecordProducer(settings, f"pytake-{FORWARDER}", linger_ms=settings.forward_linger_ms)
    on_startup: list = []
    on_shutdown: list = []
    if receipts is None:
        receipts, start_receipts, stop_receipts = _receipt_store(settings)
        on_startup.append(start_receipts)
        on_shutdown.append(stop_receipts)
    metrics = ForwarderMetrics()
    consumers = forwarder.consumers(settings, receipts, producer, metrics, producer, source)
    app = build_service_app(FORWARDER, producer, on_startup=on_startup,
                            on_started=[c.start for c in consumers], on_stopping=[c.stop for c in consumers],
                            on_shutdown=on_shutdown)
    app.include_router(metrics_router(metrics))
    app.state.metrics = metrics
    return app


class GatewayProducer(EventSink, DeadLetterSink, Producer, Protocol):
    """What the gateway's apps publish with (a RecordProducer, or an in-memory one in unit tests)."""


def _receipt_store(settings: GatewaySettings):  # noqa: ANN202 - (store, start, stop)
    if settings.dedup_store == "memory":
        async def nothing() -> None:
            return None
        return InMemoryReceiptStore(), nothing, nothing
    store = PostgresReceiptStore(settings.database_url, settings.db_schema(SERVICE))
    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        await store.start()
        tasks.append(asyncio.create_task(_cleanup_forever(store, settings)))

    async def stop() -> None:
        for task in tasks:
            task.cancel()
        await store.close()

    return store, start, stop


async def _cleanup_forever(store: PostgresReceiptStore, settings: GatewaySettings) -> None:
    """Every replica runs it; the deletes skip rows another replica is deleting."""
    retention_s = settings.dedup_retention_days * 86_400
    while True:
        try:
            deleted = await store.delete_expired(retention_s)
            if deleted:
                log.info("dedup_receipts_expired", deleted=deleted)
        except ReceiptsUnavailable as exc:
            log.warning("dedup_cleanup_failed", error=str(exc)[:300])
        await asyncio.sleep(settings.dedup_cleanup_interval_s)
