"""What the use cases depend on; adapters provide it (and tests fake it)."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from pytake_contracts import Event
from pytake_contracts.topics import TopicSpec

from ..adapters.db.repository import (
    OutboxRepository,
    RefreshTokenRepository,
    RegistryRepository,
    UserRepository,
)
from ..domain.login_throttle import ThrottleState


class Transaction(Protocol):
    registry: RegistryRepository
    users: UserRepository
    refresh_tokens: RefreshTokenRepository
    outbox: OutboxRepository
    login_throttle: ThrottleStore

    def announce(self, spec: TopicSpec, event: Event, key: str) -> None: ...
    async def flush(self) -> None: ...
    async def commit(self) -> None: ...


class ThrottleStore(Protocol):
    """Login throttle state by key, shared by every replica."""

    async def lock(self, key: str) -> ThrottleState:
        """The key's state (a fresh one if unknown), its row locked until the transaction ends."""
        ...

    async def save(self, key: str, state: ThrottleState) -> None: ...
    async def forget(self, key: str) -> None: ...

    async def sweep(self, idle_s: float, limit: int) -> int:
        """Delete up to `limit` rows untouched for `idle_s`; how many went."""
        ...


class UnitOfWork(Protocol):
    async def __aenter__(self) -> Transaction: ...
    async def __aexit__(self, *exc: object) -> None: ...


class Secrets(Protocol):
    def seal(self, secret: str) -> bytes: ...
    def open(self, token: bytes) -> str: ...
    def rotate(self, token: bytes) -> bytes: ...


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str: ...
    async def verify(self, password_hash: str, password: str) -> bool: ...


class FlowDirectory(Protocol):
    """The flow engine's answer to "is this a live flow of this organization?".

    Raises domain.errors.Unavailable when it cannot answer (never guesses either way).
    """

    async def flow_exists(self, organization_id: UUID, flow_id: UUID) -> bool: ...
