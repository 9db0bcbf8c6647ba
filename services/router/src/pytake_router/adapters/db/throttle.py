"""Login throttle rows (see service.login_throttle): one per account or client address key."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from ...domain.login_throttle import ThrottleState
from .tables import LoginThrottle


class ThrottleRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock(self, key: str) -> ThrottleState:
        # One statement creates the row if need be and locks it (ON CONFLICT DO UPDATE takes the
        # row lock), so two attempts on one key are always counted one after the other.
        row = (await self.session.execute(
            insert(LoginThrottle).values(id=uuid.uuid4(), key=key, failures=0)
            .on_conflict_do_update(index_elements=[LoginThrottle.key], set_={"updated_at": func.now()})
            .returning(LoginThrottle.failures, LoginThrottle.last_failure_at, LoginThrottle.blocked_until)
        )).one()
        return ThrottleState(row.failures, row.last_failure_at, row.blocked_until)

    async def save(self, key: str, state: ThrottleState) -> None:
        await self.session.execute(
            update(LoginThrottle).where(LoginThrottle.key == key)
            .values(failures=state.failures, last_failure_at=state.last_failure_at,
                    blocked_until=state.blocked_until, updated_at=func.now())
            .execution_options(synchronize_session=False))

    async def forget(self, key: str) -> None:
        await self.session.execute(delete(LoginThrottle).where(LoginThrottle.key == key)
                                   .execution_options(synchronize_session=False))

    async def sweep(self, idle_s: float, limit: int) -> int:
        # Rows other attempts hold are skipped, never waited for.
        stale = (select(LoginThrottle.id)
                 .where(LoginThrottle.updated_at < func.now() - timedelta(seconds=idle_s))
                 .order_by(LoginThrottle.updated_at).limit(limit).with_for_update(skip_locked=True))
        result = await self.session.execute(delete(LoginThrottle).where(LoginThrottle.id.in_(stale.scalar_subquery()))
                                            .execution_options(synchronize_session=False))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]
