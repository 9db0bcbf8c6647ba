from __future__ import annotations

from pydantic import Field

from pytake_plumbing.settings import CommonSettings


class AuditSettings(CommonSettings):
    http_port: int = Field(default=8084, alias="AUDIT_HTTP_PORT")
