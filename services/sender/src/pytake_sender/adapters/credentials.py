"""A number's access token, from the router's tenant registry (never from settings)."""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

import httpx


class CredentialsUnavailable(Exception):
    pass


class RegistryCredentials:
    def __init__(self, base_url: str, internal_token: str, ttl_s: float = 60.0) -> None:
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=5.0,
                                         headers={"X-Internal-Token": internal_token})
        self._ttl_s = ttl_s
        self._cache: dict[tuple[UUID, str], tuple[float, str]] = {}
        self._lookups: dict[tuple[UUID, str], asyncio.Future[str | None]] = {}

    async def access_token(self, organization_id: UUID, phone_number_id: str) -> str | None:
        key = (organization_id, phone_number_id)
        hit = self._cache.get(key)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        # One lookup per number at a time: a burst of sends shares it.
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = self._lookups[key] = asyncio.ensure_future(self._lookup(organization_id, phone_number_id))
            lookup.add_done_callback(lambda _: self._lookups.pop(key, None))
        return await asyncio.shield(lookup)

    async def _lookup(self, organization_id: UUID, phone_number_id: str) -> str | None:
        key = (organization_id, phone_number_id)
        try:
            response = await self._client.get(
                f"/internal/v1/organizations/{organization_id}/numbers/{phone_number_id}/credentials"
            )
        except httpx.TransportError as exc:
            raise ConnectionError(f"tenant registry unreachable: {type(exc).__name__}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise ConnectionError(f"tenant registry answered {response.status_code}")
        token = str(response.json()["access_token"])
        self._cache[key] = (time.monotonic() + self._ttl_s, token)
        return token

    def forget(self, organization_id: UUID, phone_number_id: str) -> None:
        self._cache.pop((organization_id, phone_number_id), None)

    async def close(self) -> None:
        await self._client.aclose()
