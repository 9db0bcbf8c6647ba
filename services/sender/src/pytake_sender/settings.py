from __future__ import annotations

from pydantic import Field, SecretStr

from pytake_plumbing.settings import CommonSettings


class SenderSettings(CommonSettings):
    http_port: int = Field(default=8083, alias="SENDER_HTTP_PORT")
    graph_api_base_url: str = Field(default="https://graph.facebook.com", alias="GRAPH_API_BASE_URL")
    graph_api_version: str = Field(default="v23.0", alias="GRAPH_API_VERSION")
    graph_api_timeout_s: float = Field(default=10.0, alias="GRAPH_API_TIMEOUT_S")
    router_internal_url: str = Field(default="http://127.0.0.1:8081", alias="ROUTER_INTERNAL_URL")
    internal_token: SecretStr = Field(alias="PYTAKE_INTERNAL_TOKEN")
    max_attempts: int = Field(default=5, alias="SENDER_MAX_ATTEMPTS")
    backoff_base_s: float = Field(default=0.5, alias="SENDER_BACKOFF_BASE_S")
    backoff_max_s: float = Field(default=30.0, alias="SENDER_BACKOFF_MAX_S")
