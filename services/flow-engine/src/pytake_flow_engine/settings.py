from __future__ import annotations

from pydantic import Field

from pytake_plumbing.settings import CommonSettings


class FlowEngineSettings(CommonSettings):
    http_port: int = Field(default=8082, alias="FLOW_ENGINE_HTTP_PORT")
    outbox_interval_s: float = Field(default=2.0, alias="FLOW_ENGINE_OUTBOX_INTERVAL_S")
