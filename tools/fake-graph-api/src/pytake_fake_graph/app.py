"""A stand-in for Meta's Graph API: a real HTTP server that answers sends like Meta,
records every call, fails on request with Meta's error codes, and (when given a
webhook URL) posts the `sent` status webhook Meta would post for each accepted message."""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class InjectedFailure(BaseModel):
    """Change how the next `count` sends (of one number, or of any) are answered.

    - `error`: answer with Meta's error shape (`http_status`, `code`, `message`);
    - `slow`: accept the message like Meta (recorded, wamid, status webhook) but answer only
      after `delay_s`, so a client with a shorter timeout cannot know it was sent;
    - `lost`: the request never reaches "Meta": nothing is accepted, no status follows, and
      the answer (a 504) comes only after `delay_s`.
    """

    mode: Literal["error", "slow", "lost"] = "error"
    http_status: int = Field(default=429, ge=400, le=599)
    code: int = Field(default=130429, description="Meta error code, e.g. 130429, 131047, 131056, 131048")
    message: str = "Rate limit hit"
    count: int = Field(default=1, ge=1)
    delay_s: float = Field(default=0.0, ge=0.0, le=120.0)
    phone_number_id: str | None = None


class RecordedCall(BaseModel):
    id: int
    received_at: float
    version: str
    phone_number_id: str
    authorization: str | None
    body: dict[str, Any]
    status: int
    response: dict[str, Any]

    @property
    def accepted(self) -> bool:
        return self.status == 200


class Throughput(BaseModel):
    phone_number_id: str | None
    accepted: int = Field(description="Calls answered 200 (messages Meta would deliver).")
    calls: int
    max_in_window: int = Field(description="Most calls received in any window of `window_s` seconds.")
    window_s: float


class FakeGraphState:
    def __init__(self) -> None:
        self.calls: list[RecordedCall] = []
        self.failures: list[InjectedFailure] = []
        self.changed = asyncio.Condition()

    def take_failure(self, phone_number_id: str) -> InjectedFailure | None:
        for failure in self.failures:
            if failure.phone_number_id in (None, phone_number_id):
                failure.count -= 1
                if failure.count == 0:
                    self.failures.remove(failure)
                return failure.model_copy()
        return None

    def matching(self, phone_number_id: str | None, callback: str | None = None) -> list[RecordedCall]:
        return [c for c in self.calls
                if phone_number_id in (None, c.phone_number_id)
                and callback in (None, c.body.get("biz_opaque_callback_data"))]


def max_in_window(timestamps: list[float], window_s: float) -> int:
    """Most timestamps inside any half-open window [t, t + window_s)."""
    ordered = sorted(timestamps)
    best = 0
    for i, start in enumerate(ordered):
        best = max(best, bisect.bisect_left(ordered, start + window_s) - i)
    return best


class StatusWebhooks:
    """Posts Meta's `sent` status for accepted messages, signed like Meta signs webhooks."""

    def __init__(self, url: str, app_secret: str) -> None:
        self._url = url
        self._secret = app_secret.encode()
        self._client = httpx.AsyncClient(timeout=10.0)
        self._tasks: set[asyncio.Task[None]] = set()

    def post_sent(self, phone_number_id: str, wamid: str, body: dict[str, Any]) -> None:
        status: dict[str, Any] = {"id": wamid, "status": "sent", "timestamp": str(int(time.time()))}
        if body.get("to"):
            status["recipient_id"] = body["to"]
        else:
            status["recipient_user_id"] = body.get("recipient")
        if "biz_opaque_callback_data" in body:
            status["biz_opaque_callback_data"] = body["biz_opaque_callback_data"]
        payload = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
            "field": "messages",
            "value": {"messaging_product": "whatsapp",
                      "metadata": {"display_phone_number": "15550100", "phone_number_id": phone_number_id},
                      "statuses": [status]}}]}]}
        task = asyncio.create_task(self._deliver(json.dumps(payload, separators=(",", ":")).encode()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, raw: bytes) -> None:
        signature = "sha256=" + hmac.new(self._secret, raw, hashlib.sha256).hexdigest()
        # Like Meta, retry a webhook that was not acknowledged.
        for attempt in range(20):
            try:
                response = await self._client.post(self._url, content=raw, headers={
                    "Content-Type": "application/json", "X-Hub-Signature-256": signature})
                if response.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(min(5.0, 0.2 * 2 ** attempt))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self._client.aclose()


def create_app(expected_token: str | None = None, *, latency_s: float = 0.0, webhook_url: str | None = None,
               app_secret: str | None = None) -> FastAPI:
    state = FakeGraphState()
    webhooks = StatusWebhooks(webhook_url, app_secret or "") if webhook_url else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if webhooks:
            await webhooks.close()

    app = FastAPI(title="PyTake fake Graph API", lifespan=lifespan)
    app.state.fake = state

    @app.post("/{version}/{phone_number_id}/messages")
    async def send(version: str, phone_number_id: str, request: Request,
                   authorization: str | None = Header(default=None)) -> JSONResponse:
        received_at = time.time()
        body = await request.json()
        status, response = 200, {}
        failure = state.take_failure(phone_number_id)
        delay_s = latency_s
        if not authorization or not authorization.startswith("Bearer "):
            status, response = 401, _error(190, "OAuthException", "An access token is required")
        elif expected_token and authorization != f"Bearer {expected_token}":
            status, response = 401, _error(190, "OAuthException", "Invalid OAuth access token")
        elif failure is not None and failure.mode == "error":
            status, response = failure.http_status, _error(failure.code, "OAuthException", failure.message)
        elif failure is not None and failure.mode == "lost":
            status, response = 504, {}
            delay_s = failure.delay_s
        elif body.get("messaging_product") != "whatsapp" or not (body.get("to") or body.get("recipient")):
            status, response = 400, _error(100, "OAuthException", "Invalid parameter")
        else:
            to = body.get("to") or body.get("recipient")
            wamid = "wamid." + secrets.token_hex(16)
            response = {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                        "messages": [{"id": wamid}]}
            if webhooks:
                webhooks.post_sent(phone_number_id, wamid, body)
            if failure is not None and failure.mode == "slow":
                delay_s = failure.delay_s
        async with state.changed:
            state.calls.append(RecordedCall(id=len(state.calls) + 1, received_at=received_at, version=version,
                                            phone_number_id=phone_number_id, authorization=authorization,
                                            body=body, status=status, response=response))
            state.changed.notify_all()
        if delay_s:
            await asyncio.sleep(delay_s)
        return JSONResponse(response, status_code=status)

    @app.get("/_fake/calls")
    async def calls(phone_number_id: str | None = None, callback: str | None = None, min_count: int = 0,
                    wait_s: float = 0.0) -> list[RecordedCall]:
        """Recorded calls (of a number, or carrying a `biz_opaque_callback_data`); with `min_count`
        and `wait_s`, waits until that many exist."""
        if min_count and wait_s:
            async with state.changed:
                try:
                    await asyncio.wait_for(state.changed.wait_for(
                        lambda: len(state.matching(phone_number_id, callback)) >= min_count), wait_s)
                except TimeoutError:
                    pass
        return state.matching(phone_number_id, callback)

    @app.get("/_fake/throughput")
    async def throughput(phone_number_id: str | None = None, window_s: float = 1.0) -> Throughput:
        """How many calls arrived, and the most in any window: what Meta's throughput limit counts."""
        matching = state.matching(phone_number_id)
        return Throughput(phone_number_id=phone_number_id, calls=len(matching),
                          accepted=sum(1 for c in matching if c.accepted), window_s=window_s,
                          max_in_window=max_in_window([c.received_at for c in matching], window_s))

    @app.delete("/_fake/calls", status_code=204)
    async def reset() -> None:
        state.calls.clear()
        state.failures.clear()

    @app.post("/_fake/failures", status_code=201)
    async def inject(failure: InjectedFailure) -> InjectedFailure:
        state.failures.append(failure)
        return failure

    @app.get("/_fake/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _error(code: int, kind: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code, "fbtrace_id": secrets.token_hex(8)}}
