"""The webhook endpoints Meta calls, and the metrics endpoint."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from opentelemetry import trace
from starlette.types import ASGIApp, Receive, Scope, Send

from pytake_plumbing.logs import get_logger
from pytake_plumbing.tracing import trace_context_of

from ..adapters.metrics import CONTENT_TYPE, GatewayMetrics, RenderedMetrics
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
SIGNED_POST = {
    "parameters": [
        {"name": "X-Hub-Signature-256", "in": "header", "required": True, "schema": {"type": "string"},
         "description": "sha256=<hex HMAC-SHA256 of the raw body with the Meta app secret>"},
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "description": "Meta's webhook notification (object, entry[].changes[])"}}}},
    "responses": {
        "200": {"description": "the webhook is in Kafka; each message, status and error in it is passed on once"},
        "400": {"description": "not JSON, or not a webhook notification"},
        "401": {"description": "signature missing or wrong"},
        "404": {"description": "unknown Meta app"},
        "413": {"description": "body over GATEWAY_MAX_BODY_BYTES"},
        "415": {"description": "content type is not application/json"},
        "429": {"description": "too many requests from this address"},
        "503": {"description": "not stored (Kafka or the registry unavailable): Meta retries"},
    },
}
APP_ID_SHAPE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
APP_ID = Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Meta app id, as configured in the app's webhook URL")


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict


def error_answer(status: int, code: str, message: str) -> Answer:
    return Answer(status, {"error": {"code": code, "message": message}})


def error(status: int, code: str, message: str) -> JSONResponse:
    return _json(error_answer(status, code, message))


class WebhookEndpoints:
    """What both webhook paths do; the path without an app id passes None (demo mode only)."""

    def __init__(self, ingestor: WebhookIngestor, limiter: TokenBucketLimiter, metrics: GatewayMetrics,
                 max_body_bytes: int) -> None:
        self._ingestor = ingestor
        self._limiter = limiter
        self._metrics = metrics
        self._max_body_bytes = max_body_bytes

    def over_limit(self, source: str) -> Answer | None:
        if self._limiter.allow(source):
            return None
        self._metrics.rate_limited.inc()
        return error_answer(429, "rate_limited", "too many requests from this address")

    async def verify(self, request: Request, meta_app_id: str | None, mode: str | None, token: str | None,
                     challenge: str | None) -> Response:
        if (limited := self.over_limit(_source(request))) is not None:
            return _json(limited)
        if not (mode and token and challenge):
            return error(400, "bad_request", "hub.mode, hub.verify_token and hub.challenge are required")
        try:
            answer = await self._ingestor.verify_subscription(meta_app_id, mode, token, challenge)
        except UnknownApp:
            return _json(_unknown_app(meta_app_id))
        except SecretsUnavailable as exc:
            log.error("registry_unavailable", error=str(exc))
            return error(503, "unavailable", "cannot check the verify token now, retry later")
        if answer is None:
            return error(403, "forbidden", "verification failed")
        return PlainTextResponse(answer)

    async def receive(self, delivery: Delivery) -> Answer:
        started = time.perf_counter()
        # The trace of every event from this webhook begins with this span; the stored webhook
        # carries its context (the span is not made current: nothing else here reads it).
        span = tracer.start_span("whatsapp webhook", kind=trace.SpanKind.SERVER)
        try:
            answer = await self._receive(delivery, trace_context_of(span))
            span.set_attribute("http.response.status_code", answer.status)
        finally:
            span.end()
        self._metrics.answered(answer.status, time.perf_counter() - started)
        return answer

    async def _receive(self, delivery: Delivery, trace_context: dict[str, str]) -> Answer:
        if (limited := self.over_limit(delivery.source)) is not None:
            return limited
        content_type = delivery.content_type
        if not content_type or content_type.split(";")[0].strip().lower() != "application/json":
            return error_answer(415, "unsupported_media_type", "expected application/json")
        body = await self._read_body(delivery)
        if body is None:
            return error_answer(413, "payload_too_large", f"body over {self._max_body_bytes} bytes")
        try:
            outcome = await self._ingestor.ingest(delivery.meta_app_id, body, delivery.signature, trace_context)
        except UnknownApp:
            return _unknown_app(delivery.meta_app_id)
        except InvalidSignature:
            log.warning("webhook_rejected", reason="bad_signature")
            return error_answer(401, "invalid_signature", "X-Hub-Signature-256 does not match the body")
        except MalformedPayload as exc:
            log.warning("webhook_rejected", reason="malformed", detail=str(exc))
            return error_answer(400, "malformed_payload", str(exc))
        except SecretsUnavailable as exc:
            log.error("registry_unavailable", error=str(exc))
            return error_answer(503, "unavailable", "cannot check the signature now, retry later")
        except StoreUnavailable as exc:
            # Never 200 for what is not stored: Meta retries a 5xx with backoff.
            log.error("webhook_not_stored", error=str(exc)[:300])
            return error_answer(503, "unavailable", "could not store the webhook, retry later")
        return self._answer(outcome)

    async def _read_body(self, delivery: Delivery) -> bytes | None:
        """The raw body, or None once it is over the limit (read no further)."""
        declared = delivery.content_length
        if declared and declared.isdigit() and int(declared) > self._max_body_bytes:
            return None
        body = bytearray()
        async for chunk in delivery.chunks:
            body += chunk
            if len(body) > self._max_body_bytes:
                return None
        return bytes(body)

    def _answer(self, outcome: IngestOutcome) -> Answer:
        self._metrics.stored.inc(len(outcome.stored))
        if outcome.ignored:
            # Signed by Meta but not for us: 200, or Meta would retry it for 7 days.
            log.info("webhook_parts_ignored", ignored=outcome.ignored[:50])
            for reason in outcome.ignored:
                self._metrics.ignored.labels(reason.split(":", 1)[0]).inc()
        return Answer(200, {"status": "accepted", "stored": len(outcome.stored), "ignored": len(outcome.ignored)})


@dataclass(frozen=True)
class Delivery:
    """One webhook POST as the use case needs it, whichever layer took it in."""

    meta_app_id: str | None
    source: str  # client address, for rate limiting
    content_type: str | None
    signature: str | None
    content_length: str | None
    chunks: AsyncIterator[bytes]


def _source(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _json(answer: Answer) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status)


def _unknown_app(meta_app_id: str | None) -> Answer:
    if meta_app_id is None:
        return error_answer(404, "not_found", f"use {APP_WEBHOOK_PATH} with your Meta app id")
    return error_answer(404, "unknown_app", "no Meta app with this id is registered")


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

    # The server runs WebhookFastPath in front of FastAPI for webhook POSTs (app.serving_app);
    # these routes answer the same way through the same use case, and document the API.
    @router.post(APP_WEBHOOK_PATH, response_model=None, openapi_extra=SIGNED_POST)
    async def receive_app(request: Request, meta_app_id: str = APP_ID) -> Response:
        """A signed webhook of one Meta app: 200 only once it is in Kafka."""
        return _json(await endpoints.receive(_delivery(request, meta_app_id)))

    @router.get(WEBHOOK_PATH, response_class=PlainTextResponse, response_model=None)
    async def verify(
        request: Request,
        mode: str | None = Query(default=None, alias="hub.mode"),
        token: str | None = Query(default=None, alias="hub.verify_token"),
        challenge: str | None = Query(default=None, alias="hub.challenge"),
    ) -> Response:
        """Verification handshake with the demo's settings (GATEWAY_SECRETS_SOURCE=demo only)."""
        return await endpoints.verify(request, None, mode, token, challenge)

    @router.post(WEBHOOK_PATH, response_model=None, openapi_extra=SIGNED_POST)
    async def receive(request: Request) -> Response:
        """A signed webhook checked with the demo's settings (GATEWAY_SECRETS_SOURCE=demo only)."""
        return _json(await endpoints.receive(_delivery(request, None)))

    return router


def _delivery(request: Request, meta_app_id: str | None) -> Delivery:
    headers = request.headers
    return Delivery(meta_app_id, _source(request), headers.get("content-type"), headers.get("x-hub-signature-256"),
                    headers.get("content-length"), request.stream())


def metrics_router(metrics: RenderedMetrics) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return router


def is_webhook_post(scope: dict) -> bool:
    """A webhook delivery (POST under the webhook path), as an ASGI scope."""
    return scope.get("method") == "POST" and scope.get("path", "").startswith(WEBHOOK_PATH)


class WebhookFastPath:
    """Serves webhook POSTs in front of FastAPI: no routing, dependency, middleware or telemetry layers.

    Meta's deliveries are the gateway's whole load, and those layers cost several times the
    signature check and the publish together; every other request passes through to FastAPI.
    """

    def __init__(self, app: ASGIApp, endpoints: WebhookEndpoints) -> None:
        self.app = app
        self._endpoints = endpoints

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if path == WEBHOOK_PATH:
            meta_app_id = None
        elif path.startswith(WEBHOOK_PATH + "/") and APP_ID_SHAPE.fullmatch(path[len(WEBHOOK_PATH) + 1:]):
            meta_app_id = path[len(WEBHOOK_PATH) + 1:]
        else:
            return await self.app(scope, receive, send)  # FastAPI answers 404/405/422
        headers = {name: value for name, value in scope["headers"] if name in _WANTED_HEADERS}
        client = scope.get("client")
        delivery = Delivery(meta_app_id, client[0] if client else "unknown", _header(headers, b"content-type"),
                            _header(headers, b"x-hub-signature-256"), _header(headers, b"content-length"),
                            _body_chunks(receive))
        answer = await self._endpoints.receive(delivery)
        body = json.dumps(answer.body, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": answer.status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


_WANTED_HEADERS = frozenset({b"content-type", b"x-hub-signature-256", b"content-length"})


def _header(headers: dict[bytes, bytes], name: bytes) -> str | None:
    value = headers.get(name)
    return value.decode("latin-1") if value is not None else None


async def _body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return  # the client went away; what was read fails the signature check
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return
