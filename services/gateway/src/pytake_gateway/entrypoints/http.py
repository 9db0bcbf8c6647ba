"""The webhook endpoints Meta calls, and the metrics endpoint."""

from __future__ import annotations

import time

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from opentelemetry import trace

from pytake_plumbing.logs import get_logger

from ..adapters.metrics import CONTENT_TYPE, GatewayMetrics
from ..domain.rate_limit import TokenBucketLimiter
from ..service.ingest import (
    IngestOutcome,
    InvalidSignature,
    MalformedPayload,
    SecretsUnavailable,
    StoreUnavailable,
    UnknownApp,
    WebhookIngestor,
)

log = get_logger(__name__)
tracer = trace.get_tracer("pytake.gateway")

WEBHOOK_PATH = "/api/v1/webhooks/whatsapp"
APP_WEBHOOK_PATH = WEBHOOK_PATH + "/{meta_app_id}"
APP_ID = Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Meta app id, as configured in the app's webhook URL")


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


class WebhookEndpoints:
    """What both webhook paths do; the path without an app id passes None (demo mode only)."""

    def __init__(self, ingestor: WebhookIngestor, limiter: TokenBucketLimiter, metrics: GatewayMetrics,
                 max_body_bytes: int) -> None:
        self._ingestor = ingestor
        self._limiter = limiter
        self._metrics = metrics
        self._max_body_bytes = max_body_bytes

    def over_limit(self, request: Request) -> JSONResponse | None:
        source = request.client.host if request.client else "unknown"
        if self._limiter.allow(source):
            return None
        self._metrics.rate_limited.inc()
        return error(429, "rate_limited", "too many requests from this address")

    async def verify(self, request: Request, meta_app_id: str | None, mode: str | None, token: str | None,
                     challenge: str | None) -> Response:
        if (limited := self.over_limit(request)) is not None:
            return limited
        if not (mode and token and challenge):
            return error(400, "bad_request", "hub.mode, hub.verify_token and hub.challenge are required")
        try:
            answer = await self._ingestor.verify_subscription(meta_app_id, mode, token, challenge)
        except UnknownApp:
            return _unknown_app(meta_app_id)
        except SecretsUnavailable as exc:
            log.error("registry_unavailable", error=str(exc))
            return error(503, "unavailable", "cannot check the verify token now, retry later")
        if answer is None:
            return error(403, "forbidden", "verification failed")
        return PlainTextResponse(answer)

    async def receive(self, request: Request, meta_app_id: str | None, signature: str | None,
                      content_type: str | None) -> JSONResponse:
        started = time.perf_counter()
        response = await self._receive(request, meta_app_id, signature, content_type)
        self._metrics.webhooks.labels(str(response.status_code)).inc()
        self._metrics.ack_seconds.observe(time.perf_counter() - started)
        return response

    async def _receive(self, request: Request, meta_app_id: str | None, signature: str | None,
                       content_type: str | None) -> JSONResponse:
        if (limited := self.over_limit(request)) is not None:
            return limited
        if not content_type or content_type.split(";")[0].strip().lower() != "application/json":
            return error(415, "unsupported_media_type", "expected application/json")
        body = await self._read_body(request)
        if body is None:
            return error(413, "payload_too_large", f"body over {self._max_body_bytes} bytes")
        try:
            # The trace of every event from this webhook starts here.
            with tracer.start_as_current_span("whatsapp webhook", kind=trace.SpanKind.SERVER):
                outcome = await self._ingestor.ingest(meta_app_id, body, signature)
        except UnknownApp:
            return _unknown_app(meta_app_id)
        except InvalidSignature:
            log.warning("webhook_rejected", reason="bad_signature")
            return error(401, "invalid_signature", "X-Hub-Signature-256 does not match the body")
        except MalformedPayload as exc:
            log.warning("webhook_rejected", reason="malformed", detail=str(exc))
            return error(400, "malformed_payload", str(exc))
        except SecretsUnavailable as exc:
            log.error("registry_unavailable", error=str(exc))
            return error(503, "unavailable", "cannot check the signature now, retry later")
        except StoreUnavailable as exc:
            # Never 200 for what is not stored: Meta retries a 5xx with backoff.
            log.error("webhook_not_stored", error=str(exc)[:300])
            return error(503, "unavailable", "could not store the webhook, retry later")
        return self._answer(outcome)

    async def _read_body(self, request: Request) -> bytes | None:
        """The raw body, or None once it is over the limit (read no further)."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self._max_body_bytes:
            return None
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self._max_body_bytes:
                return None
        return bytes(body)

    def _answer(self, outcome: IngestOutcome) -> JSONResponse:
        for event in outcome.published:
            self._metrics.events_published.labels(event.event_type).inc()
        for key in outcome.duplicates:
            self._metrics.duplicates.labels("status" if key.startswith("s:") else "message").inc()
        if not outcome.deduplicated:
            self._metrics.dedup_unavailable.inc()
        if outcome.ignored:
            # Signed by Meta but not for us: 200, or Meta would retry it for 7 days.
            log.info("webhook_parts_ignored", ignored=outcome.ignored[:50])
            for reason in outcome.ignored:
                self._metrics.ignored.labels(reason.split(":", 1)[0]).inc()
        if outcome.duplicates:
            log.info("webhook_redelivery_skipped", duplicates=outcome.duplicates[:50])
        if outcome.in_flight:
            # Another delivery of the same event is publishing it now; if that fails, this retry must not be lost.
            log.info("webhook_in_flight_elsewhere", keys=outcome.in_flight[:50])
            return error(503, "in_progress", "part of this webhook is being stored by another request, retry later")
        return JSONResponse({"status": "accepted", "events": len(outcome.published),
                             "duplicates": len(outcome.duplicates)})


def _unknown_app(meta_app_id: str | None) -> JSONResponse:
    if meta_app_id is None:
        return error(404, "not_found", f"use {APP_WEBHOOK_PATH} with your Meta app id")
    return error(404, "unknown_app", "no Meta app with this id is registered")


def webhook_router(endpoints: WebhookEndpoints) -> APIRouter:
    router = APIRouter(tags=["webhook"])

    @router.get(APP_WEBHOOK_PATH, response_class=PlainTextResponse, response_model=None)
    async def verify_app(
        request: Request,
        meta_app_id: str = APP_ID,
        mode: str | None = Query(default=None, alias="hub.mode"),
        token: str | None = Query(default=None, alias="hub.verify_token"),
        challenge: str | None = Query(default=None, alias="hub.challenge"),
    ) -> Response:
        """Meta's verification handshake for one Meta app: the challenge as plain text when the token matches."""
        return await endpoints.verify(request, meta_app_id, mode, token, challenge)

    @router.post(APP_WEBHOOK_PATH, response_model=None)
    async def receive_app(
        request: Request,
        meta_app_id: str = APP_ID,
        x_hub_signature_256: str | None = Header(default=None),
        content_type: str | None = Header(default=None),
    ) -> JSONResponse:
        """A signed webhook of one Meta app: 200 only once every event in it is in Kafka."""
        return await endpoints.receive(request, meta_app_id, x_hub_signature_256, content_type)

    @router.get(WEBHOOK_PATH, response_class=PlainTextResponse, response_model=None)
    async def verify(
        request: Request,
        mode: str | None = Query(default=None, alias="hub.mode"),
        token: str | None = Query(default=None, alias="hub.verify_token"),
        challenge: str | None = Query(default=None, alias="hub.challenge"),
    ) -> Response:
        """Verification handshake with the demo's settings (GATEWAY_SECRETS_SOURCE=demo only)."""
        return await endpoints.verify(request, None, mode, token, challenge)

    @router.post(WEBHOOK_PATH, response_model=None)
    async def receive(
        request: Request,
        x_hub_signature_256: str | None = Header(default=None),
        content_type: str | None = Header(default=None),
    ) -> JSONResponse:
        """A signed webhook checked with the demo's settings (GATEWAY_SECRETS_SOURCE=demo only)."""
        return await endpoints.receive(request, None, x_hub_signature_256, content_type)

    return router


def metrics_router(metrics: GatewayMetrics) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return router
