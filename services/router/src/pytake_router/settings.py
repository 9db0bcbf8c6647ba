from __future__ import annotations

from pydantic import Field, SecretStr

from pytake_plumbing.settings import CommonSettings


class RouterSettings(CommonSettings):
    http_port: int = Field(default=8081, alias="ROUTER_HTTP_PORT")
    # Fernet keys, comma-separated, newest first: the first encrypts, all decrypt (key rotation).
    secrets_keys: SecretStr = Field(alias="ROUTER_SECRETS_KEYS")
    # Shared by the services that may read a number's credentials (the sender).
    internal_token: SecretStr = Field(alias="PYTAKE_INTERNAL_TOKEN")
    route_cache_ttl_s: float = Field(default=30.0, alias="ROUTER_ROUTE_CACHE_TTL_S")
