from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from pytake_contracts.topics import INTAKE_RECORD_MAX_BYTES
from pytake_plumbing.settings import CommonSettings


class GatewaySettings(CommonSettings):
    http_port: int = Field(default=8080, alias="GATEWAY_HTTP_PORT")
    # registry: app secrets and verify tokens per Meta app from the router's registry (normal operation).
    # demo: one app secret and verify token from the settings below (local demo and tests only).
    secrets_source: Literal["registry", "demo"] = Field(default="registry", alias="GATEWAY_SECRETS_SOURCE")
    demo_app_secret: SecretStr | None = Field(default=None, alias="GATEWAY_DEMO_APP_SECRET")
    demo_verify_token: SecretStr | None = Field(default=None, alias="GATEWAY_DEMO_VERIFY_TOKEN")
    router_internal_url: str = Field(default="http://127.0.0.1:8081", alias="ROUTER_INTERNAL_URL")
    internal_token: SecretStr | None = Field(default=None, alias="PYTAKE_INTERNAL_TOKEN")
    registry_timeout_s: float = Field(default=3.0, alias="GATEWAY_REGISTRY_TIMEOUT_S")
    # Backstop for a missed RegistryChanged event; changes normally arrive within a second.
    secrets_cache_ttl_s: float = Field(default=300.0, alias="GATEWAY_SECRETS_CACHE_TTL_S")
    unknown_app_cache_ttl_s: float = Field(default=30.0, alias="GATEWAY_UNKNOWN_APP_CACHE_TTL_S")

    # A stored webhook may be twice its body once escaped; the intake topic takes records of
    # INTAKE_RECORD_MAX_BYTES, so bodies up to 2 MiB less room for the envelope.
    max_body_bytes: int = Field(default=1024 * 1024, alias="GATEWAY_MAX_BODY_BYTES", gt=0,
                                le=INTAKE_RECORD_MAX_BYTES // 2 - 64 * 1024)
    publish_timeout_s: float = Field(default=5.0, alias="GATEWAY_PUBLISH_TIMEOUT_S")
    publish_linger_ms: int = Field(default=3, alias="GATEWAY_PUBLISH_LINGER_MS")

    # The forwarder (`pytake-gateway forward`): intake topic -> dedup -> inbound topic.
    forwarder_http_port: int = Field(default=8085, alias="GATEWAY_FORWARDER_HTTP_PORT")
    forward_batch_max_records: int = Field(default=1000, alias="GATEWAY_FORWARD_BATCH_MAX_RECORDS")
    forward_linger_ms: int = Field(default=5, alias="GATEWAY_FORWARD_LINGER_MS")
    # postgres: shared by every replica (normal operation). memory: one process only (tests, benchmarks).
    dedup_store: Literal["postgres", "memory"] = Field(default="postgres", alias="GATEWAY_DEDUP_STORE")
    # Meta retries for up to 7 days; one day more covers clock skew and the last retries.
    dedup_retention_days: float = Field(default=8.0, alias="GATEWAY_DEDUP_RETENTION_DAYS")
    dedup_cleanup_interval_s: float = Field(default=600.0, alias="GATEWAY_DEDUP_CLEANUP_INTERVAL_S")

    # Per source IP; 0 turns the limit off. Meta delivers from a handful of addresses, so it is generous.
    rate_limit_per_s: float = Field(default=500.0, alias="GATEWAY_RATE_LIMIT_PER_S")
    rate_limit_burst: int = Field(default=1000, alias="GATEWAY_RATE_LIMIT_BURST")
