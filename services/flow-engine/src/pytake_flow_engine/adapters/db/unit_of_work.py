from __future__ import annotations

from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .repository import ConversationRepository, FlowRepository, OutboxRepository


class SqlUnitOfWork:
    """One transaction around one use case; rolled back unless committed."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def __aenter__(self) -> SqlUnitOfWork:
        self.session = self._session_factory()
        self.flows = FlowRepository(self.session)
        self.conversations = ConversationRepository(self.session)
        self.outbox = OutboxRepository(self.session)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.session.rollback()
        await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()
