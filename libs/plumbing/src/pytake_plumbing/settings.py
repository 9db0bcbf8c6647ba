"""Settings every service shares, read from the environment by pydantic-settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    """Connection settings and the namespace.

    `PYTAKE_NAMESPACE` prefixes topics, consumer groups, database schemas and the
    MongoDB database, so that test runs (or two stacks) share servers without
    seeing each other's data.
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:19092", alias="KAFKA_BOOTSTRAP_SERVERS")
    database_url: str = Field(
        default="postgresql+asyncpg://pytake:pytake@127.0.0.1:15432/pytake", alias="DATABASE_URL"
    )
    mongodb_url: str = Field(default="mongodb://127.0.0.1:27117/", alias="MONGODB_URL")
    namespace: str = Field(default="", alias="PYTAKE_NAMESPACE", pattern=r"^[a-z0-9_]*$")
    log_level: str = Field(default="INFO", alias="LOG_LEVEL")
    http_host: str = Field(default="127.0.0.1", alias="HTTP_HOST")

    def topic(self, spec: object) -> str:
        from pytake_contracts.topics import TopicSpec

        assert isinstance(spec, TopicSpec)
        return spec.full_name(self.namespace)

    def consumer_group(self, service: str) -> str:
        return f"{self.namespace}.{service}" if self.namespace else service

    def db_schema(self, service: str) -> str:
        base = service.replace("-", "_")
        return f"{self.namespace}_{base}" if self.namespace else base

    @property
    def mongodb_database(self) -> str:
        return f"{self.namespace}_pytake_audit" if self.namespace else "pytake_audit"
