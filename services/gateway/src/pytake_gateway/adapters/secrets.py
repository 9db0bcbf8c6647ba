"""Where the gateway gets each Meta app's secrets: the router's registry, or settings for the demo."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from pydantic import BaseModel

from pytake_plumbing.logs import get_logger

from ..service.ingest import AppCredentials, SecretsUnavailable
from ..settings import GatewaySettings

log = get_logger(__name__)


class DemoSecretSource:
    """One app secret and verify token from settings, for any app id: the local demo and tests only."""

    def __init__(self, settings: GatewaySettings) -> None:
        secret, token = settings.demo_app_secret, settings.demo_verify_token
        self._credentials = AppCredentials(
            app_secrets=[secret.get_secret_value()] if secret else [],
            verify_tokens=[token.get_secret_value()] if token else [],
        )

    async def credentials(self, meta_app_id: str | None) -> AppCredentials | None:
        return self._credentials

    def invalidate(self, meta_app_id: str | None = None) -> None:
        pass


class WebhookCredentialsResponse(BaseModel):
    """The router's answer to GET /internal/v1/meta-apps/{meta_app_id}/webhook-credentials."""

    meta_app_id: str
    app_secrets: list[str]
    verify_tokens: list[str]
    phone_number_ids: list[str] | None = None  # absent from a router older than app binding


@dataclass
class _Cached:
    credentials: AppCredentials | None  # None: the registry does not know this app
    expires_at: float


class RegistrySecretSource:
    """Credentials per Meta app from the router, cached per app id.

    Entries are dropped when the router announces a registry change (RegistryChanged,
    read by every replica), with a TTL as backstop for a missed event. Unknown apps are
    cached briefly too, so a flood of posts to a wrong path does not flood the router.
    """

    def __init__(self, client: httpx.AsyncClient, internal_token: str, clock: Callable[[], float], *,
                 ttl_s: float, unknown_ttl_s: float, max_entries: int = 10_000) -> None:
        self._client = client
        self._token = internal_token
        self._clock = clock
        self._ttl_s = ttl_s
        self._unknown_ttl_s = unknown_ttl_s
        self._cache: dict[str, _Cached] = {}
        self._lookups: dict[str, asyncio.Future[AppCredentials | None]] = {}
        self._max_entries = max_entries
        self._generation = 0  # bumped by invalidate(), so a fetch that raced it is not cached

    async def credentials(self, meta_app_id: str | None) -> AppCredentials | None:
        if meta_app_id is None:
            return None  # registry mode serves only per-app paths
        cached = self._fresh(meta_app_id)
        if cached is not None:
            return cached.credentials
        # One lookup per app at a time: a burst of webhooks for a cold app asks the router once.
        lookup = self._lookups.get(meta_app_id)
        if lookup is None:
            lookup = asyncio.ensure_future(self._lookup(meta_app_id))
            self._lookups[meta_app_id] = lookup
            lookup.add_done_callback(lambda done: self._forget_lookup(meta_app_id, done))
        return await asyncio.shield(lookup)

    def _forget_lookup(self, meta_app_id: str, done: asyncio.Future[AppCredentials | None]) -> None:
        if self._lookups.get(meta_app_id) is done:
            del self._lookups[meta_app_id]
        if not done.cancelled():
            done.exception()  # retrieved here, so an unawaited failure is not reported as lost

    async def _lookup(self, meta_app_id: str) -> AppCredentials | None:
        generation = self._generation
        credentials = await self._fetch(meta_app_id)
        if generation == self._generation:
            ttl = self._ttl_s if credentials is not None else self._unknown_ttl_s
            self._remember(meta_app_id, _Cached(credentials, self._clock() + ttl))
        return credentials

    def _remember(self, meta_app_id: str, entry: _Cached) -> None:
        if len(self._cache) >= self._max_entries:
            # Bounded: app ids come from the URL, so anyone can make up new ones.
            now = self._clock()
            self._cache = {k: v for k, v in self._cache.items() if v.expires_at > now and v.credentials is not None}
        if len(self._cache) < self._max_entries:
            self._cache[meta_app_id] = entry

    def invalidate(self, meta_app_id: str | None = None) -> None:
        """Forget one app's credentials, or every app's when `meta_app_id` is None."""
        self._generation += 1
        if meta_app_id is None:
            self._cache.clear()
            self._lookups.clear()
        else:
            self._cache.pop(meta_app_id, None)
            self._lookups.pop(meta_app_id, None)

    def _fresh(self, meta_app_id: str) -> _Cached | None:
        cached = self._cache.get(meta_app_id)
        if cached is None or cached.expires_at <= self._clock():
            return None
        return cached

    async def _fetch(self, meta_app_id: str) -> AppCredentials | None:
        try:
            response = await self._client.get(
                f"/internal/v1/meta-apps/{meta_app_id}/webhook-credentials",
                headers={"X-Internal-Token": self._token},
            )
        except httpx.HTTPError as exc:
            raise SecretsUnavailable(f"registry unreachable: {type(exc).__name__}") from exc
        if response.status_code == 404:
            log.info("unknown_meta_app", meta_app_id=meta_app_id)
            return None
        if response.status_code != 200:
            # Never the body: it could echo what it was sent.
            raise SecretsUnavailable(f"registry answered {response.status_code}")
        try:
            answer = WebhookCredentialsResponse.model_validate_json(response.content)
        except ValueError as exc:
            raise SecretsUnavailable("registry answer not understood") from exc
        numbers = frozenset(answer.phone_number_ids) if answer.phone_number_ids is not None else None
        return AppCredentials(app_secrets=answer.app_secrets, verify_tokens=answer.verify_tokens,
                              phone_number_ids=numbers)
