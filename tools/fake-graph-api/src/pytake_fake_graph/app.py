"""A stand-in for Meta's Graph API: a real HTTP server that answers sends like Meta,
records every call, and fails on request with Meta's error codes."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


class InjectedFailure(BaseModel):
    """Fail the next `count` sends (of one number, or of any) with Meta's error shape."""

    http_status: int = Field(default=429, ge=400, le=599)
    code: int = Field(default=130429, description="Meta error code, e.g. 130429, 131047, 131056, 131048")
    message: str = "Rate limit hit"
    count: int = Field(default=1, ge=1)
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
                return failure
        return None


def create_app(expected_token: str | None = None) -> FastAPI:
    app = FastAPI(title="PyTake fake Graph API")
    state = FakeGraphState()
    app.state.fake = state

    @app.post("/{version}/{phone_number_id}/messages")
    async def send(version: str, phone_number_id: str, request: Request,
                   authorization: str | None = Header(default=None)) -> JSONResponse:
        body = await request.json()
        status, response = 200, {}
        failure = state.take_failure(phone_number_id)
        if not authorization or not authorization.startswith("Bearer "):
            status, response = 401, _error(190, "OAuthException", "An access token is required")
        elif expected_token and authorization != f"Bearer {expected_token}":
            status, response = 401, _error(190, "OAuthException", "Invalid OAuth access token")
        elif failure is not None:
            status, response = failure.http_status, _error(failure.code, "OAuthException", failure.message)
        elif body.get("messaging_product") != "whatsapp" or not (body.get("to") or body.get("recipient")):
            status, response = 400, _error(100, "OAuthException", "Invalid parameter")
        else:
            to = body.get("to") or body.get("recipient")
            wamid = "wamid." + secrets.token_hex(16)
            response = {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                        "messages": [{"id": wamid}]}
        async with state.changed:
            state.calls.append(RecordedCall(id=len(state.calls) + 1, received_at=time.time(), version=version,
                                            phone_number_id=phone_number_id, authorization=authorization,
                                            body=body, status=status, response=response))
            state.changed.notify_all()
        return JSONResponse(response, status_code=status)

    @app.get("/_fake/calls")
    async def calls(phone_number_id: str | None = None, min_count: int = 0, wait_s: float = 0.0) -> list[RecordedCall]:
        """Recorded calls; with `min_count` and `wait_s`, waits until that many exist."""

        def matching() -> list[RecordedCall]:
            return [c for c in state.calls if phone_number_id in (None, c.phone_number_id)]

        if min_count and wait_s:
            async with state.changed:
                try:
                    await asyncio.wait_for(state.changed.wait_for(lambda: len(matching()) >= min_count), wait_s)
                except TimeoutError:
                    pass
        return matching()

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
