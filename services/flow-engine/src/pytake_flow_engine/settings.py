from __future__ import annotations

from pydantic import Field, SecretStr

from pytake_plumbing.settings import CommonSettings

from .domain.flow import CONVERSATION_SESSION_TTL_HOURS, FLOW_EXECUTION_TIMEOUT_MS, MAX_FLOW_ITERATIONS


class FlowEngineSettings(CommonSettings):
    http_port: int = Field(default=8082, alias="FLOW_ENGINE_HTTP_PORT")
    outbox_interval_s: float = Field(default=2.0, alias="FLOW_ENGINE_OUTBOX_INTERVAL_S")
    wake_interval_s: float = Field(default=1.0, alias="FLOW_ENGINE_WAKE_INTERVAL_S")
    batch_max_records: int = Field(default=500, ge=1, le=5000, alias="FLOW_ENGINE_BATCH_MAX_RECORDS")
    max_flow_iterations: int = Field(default=MAX_FLOW_ITERATIONS, alias="MAX_FLOW_ITERATIONS")
    flow_execution_timeout_ms: int = Field(default=FLOW_EXECUTION_TIMEOUT_MS, alias="FLOW_EXECUTION_TIMEOUT_MS")
    session_ttl_hours: int = Field(default=CONVERSATION_SESSION_TTL_HOURS, alias="CONVERSATION_SESSION_TTL_HOURS")
    # HTTP request nodes never reach private, loopback or link-local addresses unless a
    # network is listed here (comma separated CIDRs, e.g. "127.0.0.0/8" for a local test server).
    http_allowed_networks: str = Field(default="", alias="FLOW_ENGINE_HTTP_ALLOWED_NETWORKS")
    # Shared with the services that call the internal API (the router checks chatbots' flows there);
    # without it, the internal API refuses every call.
    internal_token: SecretStr | None = Field(default=None, alias="PYTAKE_INTERNAL_TOKEN")
