"""The webhook endpoints Meta calls."""

from __future__ import annotations

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from opentelemetry import trace

from pytake_plumbing.logs import get_logger

from ..service.ingest import (
    EventSink,
    InvalidSignature,
    MalformedPayload,
    SecretSource,
    StoreUnavailable,
    ingest_webhook,
    verify_subscription,
)

log = get_logger(__name__)
tracer = trace.get_tracer("pytake.gateway")

WEBHOOK_PATH = "/api/v1/webhooks/whatsapp"


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def webhook_router(secrets: SecretSource, sink: EventSink, max_body_bytes: int) -> APIRouter:
    router = APIRouter(tags=["webhook"])

    @router.get(WEBHOOK_PATH, response_class=PlainTextResponse, response_model=None)
    async def verify(
        mode: str | None = Query(default=None, alias="hub.mode"),
        token: str | None = Query(default=None, alias="hub.verify_token"),
        challenge: str | None = Query(default=None, alias="hub.challenge"),
    ) -> PlainTextResponse | JSONResponse:
        if not (mode and token and challenge):
            return error(400, "bad_request", "hub.mode, hub.verify_token and hub.challenge are required")
        answer = await verify_subscription(mode, token, challenge, secrets)
        if answer is None:
            return error(403, "forbidden", "verification failed")
        return PlainTextResponse(answer)

    @router.post(WEBHOOK_PATH, response_model=None)
    async def receive(
        request: Request,
        x_hub_signature_256: str | None = Header(default=None),
        content_type: str | None = Header(default=None),
    ) -> JSONResponse:
        if not content_type or content_type.split(";")[0].strip().lower() != "application/json":
            return error(415, "unsupported_media_type", "expected application/json")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            return error(413, "payload_too_large", f"body over {max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return error(413, "payload_too_large", f"body over {max_body_bytes} bytes")
        try:
            # The trace of every event from this webhook starts here.
            with tracer.start_as_current_span("whatsapp webhook", kind=trace.SpanKind.SERVER):
                outcome = await ingest_webhook(bytes(body), x_hub_signature_256, secrets, sink)
        except InvalidSignature:
            log.warning("webhook_rejected", reason="bad_signature")
            return error(401, "invalid_signature", "X-Hub-Signature-256 does not match the body")
        except MalformedPayload as exc:
            log.warning("webhook_rejected", reason="malformed", detail=str(exc))
            return error(400, "malformed_payload", str(exc))
        except StoreUnavailable as exc:
            # Never 200 for what is not stored: Meta retries a 5xx with backoff.
            log.error("webhook_not_stored", error=str(exc)[:300])
            return error(503, "unavailable", "could not store the webhook, retry later")
        if outcome.ignored:
            log.info("webhook_parts_ignored", ignored=outcome.ignored)
        return JSONResponse({"status": "accepted", "events": outcome.published})

    return router
