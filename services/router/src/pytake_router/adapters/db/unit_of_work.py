from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from pytake_contracts import Event
from pytake_contracts.topics import TopicSpec

from .repository import OutboxRepository, RefreshTokenRepository, RegistryRepository, UserRepository
from .throttle import ThrottleRepository


class SqlUnitOfWork:
    """One transaction around one use case; rolled back unless committed.

    Events announced during the use case go to the outbox table in the same
    transaction (so a change and its announcement commit or fail together);
    `on_commit` wakes the relay that publishes them.
    """

    def __init__(self, session_factory: async_sessionmaker[AsyncSession],
                 on_commit: Callable[[], None] | None = None) -> None:
        self._session_factory = session_factory
        self._on_commit = on_commit
        self._announced = False

    async def __aenter__(self) -> SqlUnitOfWork:
        self.session = self._session_factory()
        self.registry = RegistryRepository(self.session)
        self.users = UserRepository(self.session)
        self.refresh_tokens = RefreshTokenRepository(self.session)
        self.outbox = OutboxRepository(self.session)
        self.login_throttle = ThrottleRepository(self.session)
        self._announced = False
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        # Detach first: a rollback would expire the rows the use case returns.
        self.session.expunge_all()
        await self.session.rollback()
        await self.session.close()

    def announce(self, spec: TopicSpec, event: Event, key: str) -> None:
        self.outbox.add(spec.name, key, event.model_dump(mode="json"))
        self._announced = True

    async def flush(self) -> None:
        await self.session.flush()

    async def commit(self) -> None:
        await self.session.commit()
        if self._announced and self._on_commit is not None:
            self._on_commit()
        self._announced = False
