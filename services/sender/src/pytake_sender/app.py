"""Wiring: the one place the sender's parts are put together."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from uuid import uuid4

from fastapi import FastAPI

from pytake_plumbing.backoff import Backoff
from pytake_plumbing.database import make_engine, make_session_factory
from pytake_plumbing.logs import configure_logging
from pytake_plumbing.record_producer import RecordProducer
from pytake_plumbing.service_app import build_service_app
from pytake_plumbing.tracing import configure_tracing

from .adapters.credentials import RegistryCredentials
from .adapters.db.direct import DirectPool
from .adapters.db.permits import PermitStore, Release
from .adapters.db.repository import DeliveryRepository
from .adapters.graph_api import GraphApiClient
from .entrypoints import kafka
from .service.send import SendPolicy, Sender
from .service.throughput import PairLimits, Throughput
from .settings import SenderSettings

SERVICE = "sender"
MIGRATIONS = Path(__file__).parent / "adapters" / "db" / "migrations"


def create_app(settings: SenderSettings | None = None) -> FastAPI:
    settings = settings or SenderSettings()
    configure_logging(SERVICE, settings.log_level)
    engine = make_engine(settings.database_url, settings.db_schema(SERVICE), pool_size=settings.db_pool_size)
    sessions = make_session_factory(engine)
    graph = GraphApiClient(settings.graph_api_base_url, settings.graph_api_version, settings.graph_api_timeout_s,
                           settings.graph_api_connections, settings.graph_api_keepalive_s)
    credentials = RegistryCredentials(settings.router_internal_url, settings.internal_token.get_secret_value())
    configure_tracing(SERVICE)
    producer = RecordProducer(settings, f"pytake-{SERVICE}")
    direct = DirectPool(settings.database_url, settings.db_schema(SERVICE), size=settings.db_pool_size)
    deliveries = DeliveryRepository(sessions, direct)
    permits = PermitStore(sessions, settings.default_messages_per_second, settings.max_messages_per_second)
    # Each process holds its permits under a name of its own.
    holder = f"{socket.gethostname()[:30]}-{os.getpid()}-{uuid4().hex[:8]}"
    throughput = Throughput(permits, Release, holder, settings.permit_lease_s, settings.permit_ttl_s)
    sender = Sender(
        graph, credentials, deliveries, throughput, PairLimits(settings.pair_interval_s, settings.pair_burst),
        permits, producer,
        SendPolicy(max_attempts=settings.max_attempts, retry_window_s=settings.retry_window_s,
                   backoff=Backoff(settings.backoff_base_s, settings.backoff_max_s),
                   uncertain_resolve_s=settings.uncertain_resolve_s,
                   spam_pause_s=settings.spam_pause_s))
    consumers = kafka.consumers(settings, sender, deliveries, producer, credentials.forget)

    async def stop_consumers() -> None:
        for consumer in reversed(consumers):
            await consumer.stop()
        await throughput.close()

    async def close() -> None:
        await graph.close()
        await credentials.close()
        await direct.close()
        await engine.dispose()

    return build_service_app(SERVICE, producer,
                             on_started=[consumer.start for consumer in consumers],
                             on_stopping=[stop_consumers], on_shutdown=[close])
