"""A stand-in for Meta's Graph API: a real HTTP server that answers sends like Meta,
records every call, fails on request with Meta's error codes, and (when given a
webhook URL) posts the `sent` status webhook Meta would post for each accepted message."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from fastapi import FastAPI
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
    for_s: float | None = Field(default=None, gt=0.0, le=600.0,
                                description="Every send for this many seconds (`count` is then ignored).")
    delay_s: float = Field(default=0.0, ge=0.0, le=120.0)
    phone_number_id: str | None = None
    until: float | None = Field(default=None, description="Set by the fake: when a `for_s` failure ends.")


@dataclass(slots=True)
class Call:
    """A call as recorded: a plain dataclass, since building a pydantic model per call cost more
    than answering it; FastAPI validates it only when `/_fake/calls` is read."""

    id: int
    received_at: float
    version: str
    phone_number_id: str
    authorization: str | None
    body: dict[str, Any]
    status: int
    response: dict[str, Any]


class Throughput(BaseModel):
    phone_number_id: str | None
    accepted: int = Field(description="Calls answered 200 (messages Meta would deliver).")
    calls: int
    max_in_window: int = Field(description="Most calls received in any window of `window_s` seconds.")
    window_s: float


class FakeGraphState:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.failures: list[InjectedFailure] = []
        self.changed = asyncio.Condition()
        # Kept as calls arrive, so that asking for throughput while thousands arrive a second
        # costs one pass over arrival times, not a scan and sort of every call.
        self._arrivals: dict[str | None, list[float]] = {None: []}
        self._accepted: dict[str | None, int] = {None: 0}

    def record(self, call: Call) -> None:
        self.calls.append(call)
        for key in (None, call.phone_number_id):
            self._arrivals.setdefault(key, []).append(call.received_at)
            self._accepted[key] = self._accepted.get(key, 0) + (call.status == 200)

    def clear(self) -> None:
        self.calls.clear()
        self.failures.clear()
        self._arrivals = {None: []}
        self._accepted = {None: 0}

    def throughput(self, phone_number_id: str | None, window_s: float) -> Throughput:
        arrivals = self._arrivals.get(phone_number_id, [])
        return Throughput(phone_number_id=phone_number_id, calls=len(arrivals),
                          accepted=self._accepted.get(phone_number_id, 0), window_s=window_s,
                          max_in_window=max_in_window(arrivals, window_s))

    def take_failure(self, phone_number_id: str) -> InjectedFailure | None:
        now = time.time()
        self.failures = [f for f in self.failures if f.until is None or f.until > now]
        for failure in self.failures:
            if failure.phone_number_id in (None, phone_number_id):
                if failure.until is not None:
                    return failure.model_copy()
                failure.count -= 1
                if failure.count == 0:
                    self.failures.remove(failure)
                return failure.model_copy()
        return None

    def matching(self, phone_number_id: str | None, callback: str | None = None) -> list[Call]:
        return [c for c in self.calls
                if phone_number_id in (None, c.phone_number_id)
                and callback in (None, c.body.get("biz_opaque_callback_data"))]


def max_in_window(timestamps: list[float], window_s: float) -> int:
    """Most timestamps inside any half-open window [t, t + window_s)."""
    ordered = sorted(timestamps)  # arrival order already, bar clock steps: a linear pass for sorted()
    best = 0
    end = 0
    for start_index, start in enumerate(ordered):
        while end < len(ordered) and ordered[end] < start + window_s:
            end += 1
        best = max(best, end - start_index)
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


class Sends:
    """Answers `POST /{version}/{phone_number_id}/messages` like Meta, and records the call."""

    def __init__(self, state: FakeGraphState, expected_token: str | None, latency_s: float,
                 webhooks: StatusWebhooks | None) -> None:
        self._state = state
        self._expected_token = expected_token
        self._latency_s = latency_s
        self._webhooks = webhooks

    async def answer(self, version: str, phone_number_id: str, authorization: str | None,
                     raw_body: bytes) -> tuple[int, dict[str, Any]]:
        received_at = time.time()
        try:
            body = json.loads(raw_body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {"_unparsable": raw_body[:2000].decode("utf-8", "replace")}
        status, response = 200, {}
        failure = self._state.take_failure(phone_number_id)
        delay_s = self._latency_s
        if not authorization or not authorization.startswith("Bearer "):
            status, response = 401, _error(190, "OAuthException", "An access token is required")
        elif self._expected_token and authorization != f"Bearer {self._expected_token}":
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
            if self._webhooks:
                self._webhooks.post_sent(phone_number_id, wamid, body)
            if failure is not None and failure.mode == "slow":
                delay_s = failure.delay_s
        state = self._state
        async with state.changed:
            state.record(Call(
                id=len(state.calls) + 1, received_at=received_at, version=version,
                phone_number_id=phone_number_id, authorization=authorization, body=body, status=status,
                response=response))
            state.changed.notify_all()
        if delay_s:
            await asyncio.sleep(delay_s)
        return status, response


class FakeGraphApi:
    """The ASGI app. Sends, the hot path, are answered here without FastAPI's routing and
    validation layers (a benchmark pushes thousands a second through it, on the same cores
    as the sender); everything else (`/_fake/...`) goes to the FastAPI app."""

    def __init__(self, api: FastAPI, sends: Sends) -> None:
        self.api = api
        self._sends = sends

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = scope["path"].split("/")
            if len(parts) == 4 and parts[0] == "" and parts[1] and parts[2] and parts[3] == "messages":
                await self._send_message(parts[1], parts[2], scope, receive, send)
                return
        await self.api(scope, receive, send)

    @property
    def state(self) -> Any:
        return self.api.state

    async def _send_message(self, version: str, phone_number_id: str, scope: dict[str, Any], receive: Any,
                            send: Any) -> None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        authorization = next((value.decode("latin-1") for name, value in scope["headers"]
                              if name == b"authorization"), None)
        status, response = await self._sends.answer(version, phone_number_id, authorization, b"".join(chunks))
        raw = json.dumps(response, separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]})
        await send({"type": "http.response.body", "body": raw})


def create_app(expected_token: str | None = None, *, latency_s: float = 0.0, webhook_url: str | None = None,
               app_secret: str | None = None) -> FakeGraphApi:
    state = FakeGraphState()
    webhooks = StatusWebhooks(webhook_url, app_secret or "") if webhook_url else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if webhooks:
            await webhooks.close()

    app = FastAPI(title="PyTake fake Graph API", lifespan=lifespan,
                  description="`POST /{version}/{phone_number_id}/messages` answers like Meta's Graph API.")
    app.state.fake = state

    @app.get("/_fake/calls")
    async def calls(phone_number_id: str | None = None, callback: str | None = None, min_count: int = 0,
                    wait_s: float = 0.0, after_id: int | None = None) -> list[Call]:
        """Recorded calls (of a number, or carrying a `biz_opaque_callback_data`); with `min_count`
        and `wait_s`, waits until that many exist. With `after_id`, only the calls recorded after
        that one (ids count up from 1), waiting up to `wait_s` for one: a cheap incremental feed
        for a benchmark following thousands of sends."""
        if after_id is not None:
            # Ids are positions in the list (since the last reset): a slice, not a scan of every call.
            async with state.changed:
                if wait_s and len(state.calls) <= after_id:
                    try:
                        await asyncio.wait_for(state.changed.wait_for(lambda: len(state.calls) > after_id), wait_s)
                    except TimeoutError:
                        pass
                return state.calls[max(0, after_id):]
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
        return state.throughput(phone_number_id, window_s)

    @app.delete("/_fake/calls", status_code=204)
    async def reset() -> None:
        state.clear()

    @app.post("/_fake/failures", status_code=201)
    async def inject(failure: InjectedFailure) -> InjectedFailure:
        if failure.for_s is not None:
            failure.until = time.time() + failure.for_s
        state.failures.append(failure)
        return failure

    @app.get("/_fake/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return FakeGraphApi(app, Sends(state, expected_token, latency_s, webhooks))


def _error(code: int, kind: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code, "fbtrace_id": secrets.token_hex(8)}}
