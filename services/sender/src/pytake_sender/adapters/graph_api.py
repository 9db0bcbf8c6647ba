"""Meta Graph API client: POST /{version}/{phone_number_id}/messages over a kept-alive pool."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from ..domain.meta_errors import AmbiguousSend, MetaApiError
from .http11_transport import Http11Transport

# Failures before the request left: nothing reached Meta, sending again is safe.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
FIXED_HEADERS = ((b"Content-Type", b"application/json"), (b"User-Agent", b"pytake-sender"))


class GraphApiClient:
    def __init__(self, base_url: str, version: str, timeout_s: float, max_connections: int = 256,
                 keepalive_s: float = 4.0) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            # A connect failure should show as such (nothing sent), before the total runs out; the
            # answer is waited for under the total alone (below), one timer per send.
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s / 2), read=None),
            transport=Http11Transport(max_connections=max_connections, keepalive_expiry=keepalive_s),
        )
        self._version = version
        self._timeout_s = timeout_s
        self._urls: dict[str, httpx.URL] = {}
        # Waiting for a free connection happens here, before the clock starts: a request that
        # never left must not look unanswered.
        self._connections = asyncio.Semaphore(max_connections)

    async def send(self, phone_number_id: str, access_token: str, body: dict[str, Any]) -> str:
        """Returns the wamid; raises MetaApiError (Meta answered, or nothing was sent) or
        AmbiguousSend (the request may have been received)."""
        url = self._urls.get(phone_number_id)
        if url is None:  # merging the path into the base URL on every send costs more than the rest
            url = self._urls[phone_number_id] = self._client.base_url.join(
                f"{self._version}/{phone_number_id}/messages")
        request = self._request(url, access_token, body)
        async with self._connections:
            try:
                # httpx times the connecting; the whole call is bounded here, as the rate limiter counts on it.
                async with asyncio.timeout(self._timeout_s):
                    response = await self._client.send(request)
            except NOT_SENT as exc:
                raise MetaApiError(http_status=503, code=None, message=f"not sent: {type(exc).__name__}") from exc
            except (httpx.TransportError, TimeoutError) as exc:
                raise AmbiguousSend(f"no answer: {type(exc).__name__}") from exc
        if response.status_code >= 400:
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {}
            code = error.get("code") if isinstance(error.get("code"), int) else None
            raise MetaApiError(response.status_code, code, str(error.get("message", response.text[:200])))
        return str(response.json()["messages"][0]["id"])

    @staticmethod
    def _request(url: httpx.URL, access_token: str, body: dict[str, Any]) -> httpx.Request:
        # Built here rather than by client.post: merging the client's defaults into every
        # request cost more than sending it.
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        headers = [(b"Authorization", b"Bearer " + access_token.encode()), *FIXED_HEADERS]
        return httpx.Request("POST", url, content=content, headers=headers)

    async def close(self) -> None:
        await self._client.aclose()
