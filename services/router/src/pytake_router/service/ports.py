"""What the use cases depend on; adapters provide it (and tests fake it)."""

from __future__ import annotations

from typing import Protocol

from pytake_contracts import Event
from pytake_contracts.topics import TopicSpec

from ..adapters.db.repository import (
    OutboxRepository,
    RefreshTokenRepository,
    RegistryRepository,
    UserRepository,
)


class Transaction(Protocol):
    registry: RegistryRepository
    users: UserRepository
    refresh_tokens: RefreshTokenRepository
    outbox: OutboxRepository

    def announce(self, spec: TopicSpec, event: Event, key: str) -> None: ...
    async def flush(self) -> None: ...
    async def commit(self) -> None: ...


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
