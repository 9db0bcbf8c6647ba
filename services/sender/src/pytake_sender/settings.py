from __future__ import annotations

from pydantic import Field, SecretStr

from pytake_plumbing.settings import CommonSettings


class SenderSettings(CommonSettings):
    http_port: int = Field(default=8083, alias="SENDER_HTTP_PORT")
    graph_api_base_url: str = Field(default="https://graph.facebook.com", alias="GRAPH_API_BASE_URL")
    graph_api_version: str = Field(default="v23.0", alias="GRAPH_API_VERSION")
    graph_api_timeout_s: float = Field(default=10.0, gt=0, alias="GRAPH_API_TIMEOUT_S")
    graph_api_connections: int = Field(default=256, ge=1, alias="GRAPH_API_CONNECTIONS")
    # Idle connections are closed after this, before the server would: a server closing a
    # connection as a request goes out on it leaves that send ambiguous (resolved, but slowly).
    graph_api_keepalive_s: float = Field(default=4.0, gt=0, alias="GRAPH_API_KEEPALIVE_S")
    router_internal_url: str = Field(default="http://127.0.0.1:8081", alias="ROUTER_INTERNAL_URL")
    internal_token: SecretStr = Field(alias="PYTAKE_INTERNAL_TOKEN")
    # Retries of throttles and transient failures (exponential backoff, full jitter).
    max_attempts: int = Field(default=5, ge=1, alias="SENDER_MAX_ATTEMPTS")
    # ... and at least for this long from the first attempt, whatever their number.
    retry_window_s: float = Field(default=300.0, ge=0, alias="SENDER_RETRY_WINDOW_S")
    backoff_base_s: float = Field(default=0.5, ge=0, alias="SENDER_BACKOFF_BASE_S")
    backoff_max_s: float = Field(default=30.0, ge=0, alias="SENDER_BACKOFF_MAX_S")
    # Throughput of a number (Meta: 80/s by default, up to 1,000/s); per-number values live in
    # the sender's table number_limits (`pytake-sender set-rate`).
    default_messages_per_second: int = Field(default=80, ge=1, alias="SENDER_DEFAULT_MESSAGES_PER_SECOND")
    max_messages_per_second: int = Field(default=1000, ge=1, alias="SENDER_MAX_MESSAGES_PER_SECOND")
    permit_lease_s: float = Field(default=5.0, gt=0, alias="SENDER_PERMIT_LEASE_S")
    # Pair limit: one message per `pair_interval_s` to the same user, bursts of `pair_burst`.
    pair_interval_s: float = Field(default=6.0, ge=0, alias="SENDER_PAIR_INTERVAL_S")
    pair_burst: int = Field(default=45, ge=1, alias="SENDER_PAIR_BURST")
    # 131048 (spam limit): how long a number stays paused unless an operator resumes it.
    spam_pause_s: float = Field(default=3600.0, ge=0, alias="SENDER_SPAM_PAUSE_S")
    # A send with no answer is resolved by the status webhook Meta posts for it; with none
    # after this long, it is taken as never received and sent again.
    uncertain_resolve_s: float = Field(default=120.0, gt=0, alias="SENDER_UNCERTAIN_RESOLVE_S")
    # The consumer: records held in memory, and conversations worked on at once.
    max_buffered: int = Field(default=5000, ge=1, alias="SENDER_MAX_BUFFERED")
    max_active: int = Field(default=512, ge=1, alias="SENDER_MAX_ACTIVE")
    db_pool_size: int = Field(default=10, ge=1, alias="SENDER_DB_POOL_SIZE")

    @property
    def permit_ttl_s(self) -> float:
        """How long a permit lease is safe from other replicas, were this one to die: its last
        send starts before the lease ends and counts for one second after its timeout."""
        return self.permit_lease_s + self.graph_api_timeout_s + 2.0
