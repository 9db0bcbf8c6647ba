"""Wiring: the one place the router's parts are put together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from uuid import uuid4

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from pytake_plumbing.auth import AuthSettings
from pytake_plumbing.database import make_engine, make_session_factory
from pytake_plumbing.errors import error_body
from pytake_plumbing.logs import configure_logging, log_context
from pytake_plumbing.record_producer import RecordProducer
from pytake_plumbing.revocations import RevocationView, revocation_feed
from pytake_plumbing.service_app import build_service_app
from pytake_plumbing.tracing import configure_tracing

from .adapters.crypto import SecretBox
from .adapters.db.repository import RegistryRepository
from .adapters.db.unit_of_work import SqlUnitOfWork
from .adapters.flow_directory import HttpFlowDirectory
from .adapters.outbox_relay import OutboxRelay
from .adapters.passwords import Argon2Passwords
from .domain.errors import RegistryError
from .domain.model import NumberRoute
from .entrypoints import api, http, kafka
from .service.accounts import Accounts
from .service.login_throttle import LoginThrottle
from .service.management import Management
from .service.ports import FlowDirectory
from .service.routing import RouteCache
from .settings import RouterSettings

SERVICE = "router"
MIGRATIONS = Path(__file__).parent / "adapters" / "db" / "migrations"


def create_app(settings: RouterSettings | None = None, auth: AuthSettings | None = None, *,
               configure_logs: bool = True, flow_directory: FlowDirectory | None = None) -> FastAPI:
    """`flow_directory` says which flows exist (by default, the flow engine's internal API over HTTP)."""
    settings = settings or RouterSettings()
    auth = auth or AuthSettings()
    if configure_logs:
        configure_logging(SERVICE, settings.log_level)
    engine = make_engine(settings.database_url, settings.db_schema(SERVICE))
    sessions = make_session_factory(engine)
    box = SecretBox(settings.secrets_keys.get_secret_value())
    passwords = Argon2Passwords()

    async def lookup(phone_number_id: str) -> NumberRoute | None:
        async with sessions() as session:
            return await RegistryRepository(session).route_for(phone_number_id)

    cache = RouteCache(lookup, settings.route_cache_ttl_s)
    configure_tracing(SERVICE)
    producer = RecordProducer(settings, f"pytake-{SERVICE}")
    consumers = kafka.consumers(settings, cache, producer, max_records=settings.route_batch_max_records)
    relay = OutboxRelay(sessions, producer, poll_interval_s=settings.outbox_poll_interval_s)

    def uow() -> SqlUnitOfWork:
        return SqlUnitOfWork(sessions, on_commit=relay.wake)

    async def close_db() -> None:
        await engine.dispose()

    http_flows = HttpFlowDirectory(settings.flow_engine_internal_url, settings.internal_token.get_secret_value())

    async def close_flow_directory() -> None:
        await http_flows.close()

    revocations = RevocationView(auth.access_ttl_s)
    feed = revocation_feed(settings, revocations, auth.access_ttl_s)
    app = build_service_app(SERVICE, producer, readiness=[feed.ready],
                            on_startup=[feed.start],
                            on_started=[*(consumer.start for consumer in consumers), relay.start],
                            on_stopping=[consumer.stop for consumer in consumers],
                            on_shutdown=[relay.stop, feed.stop, close_db, close_flow_directory],
                            title="PyTake router: tenants and routing")
    management = Management(uow, box, passwords, flow_directory or http_flows)
    accounts = Accounts(uow, passwords, auth, throttle=LoginThrottle(uow, settings.login_throttle_policy()))
    guard = api.Guard(auth, accounts, revocations)
    app.include_router(api.auth_router(accounts))
    app.include_router(api.organizations_router(management, guard))
    app.include_router(api.users_router(management, guard))
    app.include_router(api.numbers_router(management, guard))
    app.include_router(api.meta_apps_router(management, guard))
    app.include_router(api.chatbots_router(management, guard))
    app.include_router(http.internal_router(uow, box, settings.internal_token.get_secret_value()))
    install_registry_errors(app)
    app.state.route_cache = cache
    app.state.engine = engine
    app.state.outbox_relay = relay
    return app


def install_registry_errors(app: FastAPI) -> None:
    @app.exception_handler(RegistryError)
    async def registry_error(_: Request, exc: RegistryError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message), status_code=exc.status)

    @app.middleware("http")
    async def correlation(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # Changes made by this request are announced with its correlation id, and its logs carry it.
        correlation_id = request.headers.get("x-correlation-id", "")[:64] or uuid4().hex
        with log_context(correlation_id=correlation_id):
            response = await call_next(request)
        response.headers["X-Correlation-Id"] = correlation_id
        return response

