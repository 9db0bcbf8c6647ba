from __future__ import annotations

from pydantic import Field, SecretStr

from pytake_plumbing.settings import CommonSettings


class GatewaySettings(CommonSettings):
    http_port: int = Field(default=8080, alias="GATEWAY_HTTP_PORT")
    # Only for the local demo; in normal operation secrets come from the tenant registry.
    demo_app_secret: SecretStr | None = Field(default=None, alias="GATEWAY_DEMO_APP_SECRET")
    demo_verify_token: SecretStr | None = Field(default=None, alias="GATEWAY_DEMO_VERIFY_TOKEN")
    max_body_bytes: int = Field(default=1024 * 1024, alias="GATEWAY_MAX_BODY_BYTES")
    publish_timeout_s: float = Field(default=10.0, alias="GATEWAY_PUBLISH_TIMEOUT_S")
