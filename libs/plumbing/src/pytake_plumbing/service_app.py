"""Every service runs as one ASGI process: FastAPI for health/readiness (and its API),
with its Kafka producer started and stopped in the app's lifespan."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .backoff import OUTAGE
from .errors import document_errors, error_body, install_error_handlers, log_unhandled
from .logs import get_logger
from .messaging import is_transient
from .request_guard import DEFAULT_MAX_BODY_BYTES, Exclude, RequestGuard, document_nul_rule

log = get_logger(__name__)

Hook = Callable[[], Awaitable[None]]


class Producer(Protocol):
    """The service's Kafka producer (record_producer's, or an in-memory one in unit tests)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def reachable(self) -> bool: ...
ReadinessCheck = Callable[[], Awaitable[bool]]


def build_service_app(
    service: str,
    producer: Producer,
    *,
    on_startup: Sequence[Hook] = (),
    on_started: Sequence[Hook] = (),
    on_stopping: Sequence[Hook] = (),
    on_shutdown: Sequence[Hook] = (),
    readiness: Sequence[ReadinessCheck] = (),
    title: str | None = None,
    telemetry: dict[str, object] | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    guard_exclude: Exclude | None = None,
) -> FastAPI:
    """`telemetry` tunes FastAPI's own OpenTelemetry spans (a hot path may drop the per-operation ones).

    Every request passes the request guard (413 over `max_body_bytes`, 422 for NUL characters and
    JSON PostgreSQL cannot store) except those `guard_exclude` names: a hot path with its own limits.
    The app is ready when Kafka answers and every `readiness` check passes.
    """
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await producer.start()
        for hook in on_startup:
            await until_available(hook)
        for hook in on_started:
            await until_available(hook)
        tune_garbage_collector()
        log.info("service_started", service=service)
        try:
            yield
        finally:
            # Before the producer stops: consumers may still publish (dead letters) while draining.
            for hook in on_stopping:
                await hook()
            await producer.stop()
            for hook in on_shutdown:
                await hook()
            log.info("service_stopped", service=service)

    app = FastAPI(
        title=title or f"PyTake {service}",
        lifespan=lifespan,
        docs_url="/api/v1/docs",
        openapi_url="/api/v1/openapi.json",
        redoc_url=None,
        telemetry=telemetry,  # type: ignore[arg-type]
    )

    @app.get("/api/v1/health", tags=["health"])
    async def health() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/api/v1/ready", tags=["health"])
    async def ready() -> JSONResponse:
        checks = [await producer.reachable(), *[await check() for check in readiness]]
        ok = all(checks)
        return JSONResponse({"ready": ok, "service": service}, status_code=200 if ok else 503)

    install_error_handlers(app)
    document_errors(app)
    document_nul_rule(app)
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes, exclude=guard_exclude)

    @app.exception_handler(Exception)
    async def unhandled(_: Request, exc: Exception) -> JSONResponse:
        # Never a stack trace to a client; the log has it (a database error's without its bind values).
        log_unhandled(exc)
        return JSONResponse(error_body("internal_error", "internal error"), status_code=500)

    return app


def tune_garbage_collector() -> None:
    """Run once startup is done: the cyclic collector took a tenth of a hot path's CPU.

    What exists after startup (modules, app, pools) lives as long as the process: frozen,
    it is never scanned again. Requests allocate many short-lived containers that reference
    counting frees; young collections every 50,000 allocations instead of 700 still catch
    the rare cycle.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    gc.enable()  # a service's main module turns it off for the start


async def until_available(hook: Hook, within_s: float = 60.0) -> None:
    """Runs a startup hook, again while it fails for an outage (a server restarting, or one that
    drops a connection when two replicas prepare it at once): a replica starting during a short
    outage comes up after it instead of exiting. Other errors, or an outage past `within_s`, stop it."""
    deadline = time.monotonic() + within_s
    attempt = 0
    while True:
        try:
            await hook()
            return
        except Exception as exc:
            attempt += 1
            delay = OUTAGE.delay(attempt)
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("startup_retry", hook=getattr(hook, "__qualname__", repr(hook)), error=repr(exc)[:300])
            await asyncio.sleep(delay)
