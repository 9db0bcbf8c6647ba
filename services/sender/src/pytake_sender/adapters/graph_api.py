"""Meta Graph API client: POST /{version}/{phone_number_id}/messages over a kept-alive pool."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from ..domain.meta_errors import AmbiguousSend, MetaApiError

# Failures before the request left: nothing reached Meta, sending again is safe.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
# httpcore scans its whole pool on every request: several small pools cost far less CPU than
# one large one at thousands of requests a second.
CONNECTIONS_PER_POOL = 32


class GraphApiClient:
    def __init__(self, base_url: str, version: str, timeout_s: float, max_connections: int = 256) -> None:
        pools = max(1, -(-max_connections // CONNECTIONS_PER_POOL))
        per_pool = -(-max_connections // pools)
        self._clients = [httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            # A connect failure should show as such (nothing sent), before the total runs out.
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s / 2)),
            limits=httpx.Limits(max_connections=per_pool, max_keepalive_connections=per_pool, keepalive_expiry=30.0),
        ) for _ in range(pools)]
        self._version = version
        self._timeout_s = timeout_s
        # One token per connection, naming its pool. Waiting for a free connection happens
        # here, before the clock starts: a request that never left must not look unanswered.
        self._free: asyncio.LifoQueue[httpx.AsyncClient] = asyncio.LifoQueue()
        for _ in range(per_pool):
            for client in self._clients:
                self._free.put_nowait(client)

    async def send(self, phone_number_id: str, access_token: str, body: dict[str, Any]) -> str:
        """Returns the wamid; raises MetaApiError (Meta answered, or nothing was sent) or
        AmbiguousSend (the request may have been received)."""
        client = await self._free.get()
        try:
            # httpx times each phase; the total is bounded too, as the rate limiter counts on it.
            async with asyncio.timeout(self._timeout_s):
                response = await client.post(
                    f"/{self._version}/{phone_number_id}/messages",
                    json=body,
                    headers={"Authorization": f"Bearer {access_token}"},
                )
        except NOT_SENT as exc:
            raise MetaApiError(http_status=503, code=None, message=f"not sent: {type(exc).__name__}") from exc
        except (httpx.TransportError, TimeoutError) as exc:
            raise AmbiguousSend(f"no answer: {type(exc).__name__}") from exc
        finally:
            self._free.put_nowait(client)
        if response.status_code >= 400:
            try:
                error = response.json().get("error", {})
            except ValueError:
                error = {}
            code = error.get("code") if isinstance(error.get("code"), int) else None
            raise MetaApiError(response.status_code, code, str(error.get("message", response.text[:200])))
        return str(response.json()["messages"][0]["id"])

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()
