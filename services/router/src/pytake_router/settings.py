from __future__ import annotations

from pydantic import Field, SecretStr

from pytake_plumbing.settings import CommonSettings

from .domain.login_throttle import BackoffRule, LoginThrottlePolicy


class RouterSettings(CommonSettings):
    http_port: int = Field(default=8081, alias="ROUTER_HTTP_PORT")
    # Fernet keys, comma-separated, newest first: the first encrypts, all decrypt (key rotation).
    secrets_keys: SecretStr = Field(alias="ROUTER_SECRETS_KEYS")
    # Shared by the services that may read the registry's secrets (gateway, sender).
    internal_token: SecretStr = Field(alias="PYTAKE_INTERNAL_TOKEN")
    # The flow engine's internal API: a chatbot may only point at a live flow of its organization.
    flow_engine_internal_url: str = Field(default="http://127.0.0.1:8082", alias="FLOW_ENGINE_INTERNAL_URL")
    # A backstop only: routes are dropped as soon as a registry change is announced.
    route_cache_ttl_s: float = Field(default=30.0, alias="ROUTER_ROUTE_CACHE_TTL_S")
    # Records per routing batch.
    route_batch_max_records: int = Field(default=500, alias="ROUTER_BATCH_MAX_RECORDS")
    # How often the outbox relay looks for changes committed elsewhere (CLI, other replicas).
    outbox_poll_interval_s: float = Field(default=1.0, alias="ROUTER_OUTBOX_POLL_INTERVAL_S")
    # Login throttling (README "Login throttling"): failures allowed before backing off, the first
    # delay (doubled per further failure), its cap, and how long failures are remembered.
    login_account_max_failures: int = Field(default=5, ge=1, alias="ROUTER_LOGIN_ACCOUNT_MAX_FAILURES")
    login_account_base_delay_s: float = Field(default=1.0, gt=0, alias="ROUTER_LOGIN_ACCOUNT_BASE_DELAY_S")
    login_account_max_delay_s: float = Field(default=60.0, gt=0, alias="ROUTER_LOGIN_ACCOUNT_MAX_DELAY_S")
    login_account_window_s: float = Field(default=900.0, gt=0, alias="ROUTER_LOGIN_ACCOUNT_WINDOW_S")
    login_address_max_failures: int = Field(default=20, ge=1, alias="ROUTER_LOGIN_ADDRESS_MAX_FAILURES")
    login_address_base_delay_s: float = Field(default=1.0, gt=0, alias="ROUTER_LOGIN_ADDRESS_BASE_DELAY_S")
    login_address_max_delay_s: float = Field(default=900.0, gt=0, alias="ROUTER_LOGIN_ADDRESS_MAX_DELAY_S")
    login_address_window_s: float = Field(default=3600.0, gt=0, alias="ROUTER_LOGIN_ADDRESS_WINDOW_S")

    def login_throttle_policy(self) -> LoginThrottlePolicy:
        return LoginThrottlePolicy(
            account=BackoffRule(self.login_account_max_failures, self.login_account_base_delay_s,
                                self.login_account_max_delay_s, self.login_account_window_s),
            address=BackoffRule(self.login_address_max_failures, self.login_address_base_delay_s,
                                self.login_address_max_delay_s, self.login_address_window_s))
