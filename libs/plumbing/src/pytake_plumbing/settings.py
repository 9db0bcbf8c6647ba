"""Settings every service shares, read from the environment by pydantic-settings."""

from __future__ import annotations

from typing import Any

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
    # A name this replica keeps across restarts (Kubernetes: the pod's name, which survives a
    # container restart). Set, it makes the replica a static member of its consumer groups: restarted
    # within the session timeout, it takes its partitions back at once, with no rebalance; a replica
    # that stays away has its partitions moved after the session timeout. Unset: dynamic membership.
    replica_id: str = Field(default="", alias="PYTAKE_REPLICA_ID", pattern=r"^[A-Za-z0-9._-]{0,100}$")
    # How long a silent member keeps its partitions. Unset: 20 s for a static member (a restart,
    # process start included, fits well inside it even on a busy node), 10 s for a dynamic one.
    kafka_session_timeout_ms: int | None = Field(default=None, ge=1_000, le=300_000, alias="KAFKA_SESSION_TIMEOUT_MS")

    def topic(self, spec: object) -> str:
        from pytake_contracts.topics import TopicSpec

        assert isinstance(spec, TopicSpec)
        return spec.full_name(self.namespace)

    def consumer_group(self, service: str) -> str:
        return f"{self.namespace}.{service}" if self.namespace else service

    def group_membership(self, group_id: str) -> dict[str, Any]:
        """librdkafka's options for membership of `group_id` (one mechanism for every consumer).

        Heartbeats every second, not the usual 3 s: members learn of a rebalance on their next
        heartbeat, so a group settles in about a second once a member joins or leaves.
        """
        instance = f"{group_id}.{self.replica_id}" if self.replica_id else None
        session_timeout_ms = self.kafka_session_timeout_ms or (20_000 if instance else 10_000)
        options: dict[str, Any] = {
            "group.id": group_id,
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": min(1_000, session_timeout_ms // 3),
        }
        if instance:
            options["group.instance.id"] = instance
        return options

    def db_schema(self, service: str) -> str:
        base = service.replace("-", "_")
        return f"{self.namespace}_{base}" if self.namespace else base

    @property
    def mongodb_database(self) -> str:
        return f"{self.namespace}_pytake_audit" if self.namespace else "pytake_audit"
