from __future__ import annotations

from types import TracebackType

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .repository import ConversationRepository, FlowRepository, OutboxRepository


class SqlUnitOfWork:
    """One transaction around one use case; rolled back unless committed."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory

    async def __aenter__(self) -> SqlUnitOfWork:
        self.session = self._session_factory()
        # Use cases flush when they mean to: a lookup must not flush half-built rows.
        self.session.autoflush = False
        self.memo: dict[object, object] = {}  # per-transaction lookups (e.g. a flow's latest version)
        self.flows = FlowRepository(self.session)
        self.conversations = ConversationRepository(self.session)
        self.outbox = OutboxRepository(self.session)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        # close() rolls back whatever was not committed and detaches the rows with their
        # loaded values intact, so callers may read what a use case returned.
        await self.session.close()

    async def commit(self) -> None:
        await self.session.commit()

    async def relay_lock(self) -> bool:
        """A transaction-scoped lock that only one outbox relay of this schema holds at a time."""
        return bool(await self.session.scalar(
            text("SELECT pg_try_advisory_xact_lock(hashtext('pytake-outbox-relay:' || current_schema()))")))
