from __future__ import annotations

from pydantic import Field, SecretStr

from pytake_plumbing.settings import CommonSettings


class RouterSettings(CommonSettings):
    http_port: int = Field(default=8081, alias="ROUTER_HTTP_PORT")
    # Fernet keys, comma-separated, newest first: the first encrypts, all decrypt (key rotation).
    secrets_keys: SecretStr = Field(alias="ROUTER_SECRETS_KEYS")
    # Shared by the services that may read the registry's secrets (gateway, sender).
    internal_token: SecretStr = Field(alias="PYTAKE_INTERNAL_TOKEN")
    # A backstop only: routes are dropped as soon as a registry change is announced.
    route_cache_ttl_s: float = Field(default=30.0, alias="ROUTER_ROUTE_CACHE_TTL_S")
    # Records per routing batch.
    route_batch_max_records: int = Field(default=500, alias="ROUTER_BATCH_MAX_RECORDS")
    # How often the outbox relay looks for changes committed elsewhere (CLI, other replicas).
    outbox_poll_interval_s: float = Field(default=1.0, alias="ROUTER_OUTBOX_POLL_INTERVAL_S")
