"""Data access for the tenant registry. Every query on a tenant-owned table names its
organization, except tenant resolution (a receiving phone_number_id, a Meta app id),
which is how the organization is found in the first place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ...domain.model import KeywordRoute, NumberRoute, normalize_keyword
from .tables import Chatbot, MetaApp, Organization, OutboxRecord, RefreshToken, User, WhatsAppNumber

RowT = TypeVar("RowT")


@dataclass(frozen=True)
class Page(Generic[RowT]):
    items: list[RowT]
    total: int
    limit: int
    offset: int


async def _page(session: AsyncSession, query: Select[Any], limit: int, offset: int) -> Page[Any]:
    total = await session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = (await session.scalars(query.limit(limit).offset(offset))).all()
    return Page(items=list(rows), total=int(total or 0), limit=limit, offset=offset)


class RegistryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- tenant resolution -------------------------------------------------------

    async def route_for(self, phone_number_id: str) -> NumberRoute | None:
        # The receiving number is what tells us the organization.
        number = await self.session.scalar(
            select(WhatsAppNumber)
            .join(Organization, Organization.id == WhatsAppNumber.organization_id)
            .where(WhatsAppNumber.phone_number_id == phone_number_id, WhatsAppNumber.deleted_at.is_(None),
                   Organization.deleted_at.is_(None))
        )
        if number is None:
            return None
        chatbots = (await self.session.scalars(
            select(Chatbot).where(
                Chatbot.organization_id == number.organization_id,
                Chatbot.number_id == number.id,
                Chatbot.active.is_(True),
                Chatbot.deleted_at.is_(None),
            ).order_by(Chatbot.created_at)
        )).all()
        default = next((c for c in chatbots if c.is_default), None)
        keyword_routes = tuple(
            KeywordRoute(frozenset(normalize_keyword(k) for k in c.start_keywords), c.id, c.flow_id)
            for c in chatbots if c.start_keywords
        )
        return NumberRoute(
            organization_id=number.organization_id,
            number_id=number.id,
            active=number.active,
            chatbot_id=default.id if default else None,
            flow_id=default.flow_id if default else None,
            keyword_routes=keyword_routes,
            meta_app_id=number.meta_app_id,
        )

    async def bound_numbers_of_app(self, meta_app_id: str) -> Sequence[WhatsAppNumber]:
        """Live numbers of the app, active or not. Only numbers bound by the app's owner count: a
        number of another organization that names the app (registered before apps had owners)
        must not add its secret to the app's."""
        return (await self.session.scalars(
            select(WhatsAppNumber)
            .join(Organization, Organization.id == WhatsAppNumber.organization_id)
            .join(MetaApp, (MetaApp.meta_app_id == WhatsAppNumber.meta_app_id) & MetaApp.deleted_at.is_(None))
            .where(WhatsAppNumber.meta_app_id == meta_app_id,
                   WhatsAppNumber.deleted_at.is_(None), Organization.deleted_at.is_(None),
                   MetaApp.organization_id.is_(None) | (MetaApp.organization_id == WhatsAppNumber.organization_id))
            .order_by(WhatsAppNumber.created_at)
        )).all()

    async def all_numbers(self, after: UUID | None, limit: int) -> Sequence[WhatsAppNumber]:
        """Every number, deleted ones too, in id order (secret rotation walks them all)."""
        query = select(WhatsAppNumber).order_by(WhatsAppNumber.id).limit(limit).with_for_update()
        if after is not None:
            query = query.where(WhatsAppNumber.id > after)
        return (await self.session.scalars(query)).all()

    # --- organizations -------------------------------------------------------------

    async def organization(self, organization_id: UUID) -> Organization | None:
        return await self.session.scalar(
            select(Organization).where(Organization.id == organization_id, Organization.deleted_at.is_(None))
        )

    async def organization_by_slug(self, slug: str) -> Organization | None:
        return await self.session.scalar(
            select(Organization).where(Organization.slug == slug, Organization.deleted_at.is_(None))
        )

    async def organizations(self, *, name: str | None, slug: str | None, limit: int, offset: int
                            ) -> Page[Organization]:
        query = select(Organization).where(Organization.deleted_at.is_(None))
        if name:
            query = query.where(Organization.name.ilike(f"%{_escape_like(name)}%", escape="\\"))
        if slug:
            query = query.where(Organization.slug == slug)
        return await _page(self.session, query.order_by(Organization.created_at, Organization.id), limit, offset)

    # --- numbers ---------------------------------------------------------------------

    async def number(self, organization_id: UUID, phone_number_id: str) -> WhatsAppNumber | None:
        return await self.session.scalar(
            select(WhatsAppNumber).where(
                WhatsAppNumber.organization_id == organization_id,
                WhatsAppNumber.phone_number_id == phone_number_id,
                WhatsAppNumber.deleted_at.is_(None),
            )
        )

    async def number_by_id(self, organization_id: UUID, number_id: UUID) -> WhatsAppNumber | None:
        return await self.session.scalar(
            select(WhatsAppNumber).where(
                WhatsAppNumber.organization_id == organization_id,
                WhatsAppNumber.id == number_id,
                WhatsAppNumber.deleted_at.is_(None),
            )
        )

    async def phone_number_id_taken(self, phone_number_id: str) -> bool:
        # Across organizations: one live registration per Meta phone number.
        found = await self.session.scalar(
            select(WhatsAppNumber.id).where(WhatsAppNumber.phone_number_id == phone_number_id,
                                            WhatsAppNumber.deleted_at.is_(None))
        )
        return found is not None

    async def numbers(self, organization_id: UUID, *, active: bool | None, phone_number_id: str | None,
                      meta_app_id: str | None, limit: int, offset: int) -> Page[WhatsAppNumber]:
        query = select(WhatsAppNumber).where(WhatsAppNumber.organization_id == organization_id,
                                             WhatsAppNumber.deleted_at.is_(None))
        if active is not None:
            query = query.where(WhatsAppNumber.active.is_(active))
        if phone_number_id:
            query = query.where(WhatsAppNumber.phone_number_id == phone_number_id)
        if meta_app_id:
            query = query.where(WhatsAppNumber.meta_app_id == meta_app_id)
        return await _page(self.session, query.order_by(WhatsAppNumber.created_at, WhatsAppNumber.id),
                           limit, offset)

    async def numbers_of(self, organization_id: UUID) -> Sequence[WhatsAppNumber]:
        return (await self.session.scalars(
            select(WhatsAppNumber).where(WhatsAppNumber.organization_id == organization_id,
                                         WhatsAppNumber.deleted_at.is_(None))
        )).all()

    async def numbers_of_app(self, meta_app_id: str) -> Sequence[WhatsAppNumber]:
        return (await self.session.scalars(
            select(WhatsAppNumber).where(WhatsAppNumber.meta_app_id == meta_app_id,
                                         WhatsAppNumber.deleted_at.is_(None))
        )).all()

    # --- Meta apps -------------------------------------------------------------------
    # `owner` is an organization's id, or None for a platform admin, who sees every app.

    async def meta_app(self, meta_app_id: str) -> MetaApp | None:
        return await self.session.scalar(
            select(MetaApp).where(MetaApp.meta_app_id == meta_app_id, MetaApp.deleted_at.is_(None)))

    async def meta_app_by_id(self, owner: UUID | None, app_id: UUID) -> MetaApp | None:
        query = select(MetaApp).where(MetaApp.id == app_id, MetaApp.deleted_at.is_(None))
        if owner is not None:
            query = query.where(MetaApp.organization_id == owner)
        return await self.session.scalar(query)

    async def meta_apps(self, owner: UUID | None, *, limit: int, offset: int) -> Page[MetaApp]:
        query = select(MetaApp).where(MetaApp.deleted_at.is_(None))
        if owner is not None:
            query = query.where(MetaApp.organization_id == owner)
        return await _page(self.session, query.order_by(MetaApp.created_at, MetaApp.id), limit, offset)

    async def meta_apps_of(self, organization_id: UUID) -> Sequence[MetaApp]:
        return (await self.session.scalars(
            select(MetaApp).where(MetaApp.organization_id == organization_id, MetaApp.deleted_at.is_(None))
        )).all()

    # --- chatbots --------------------------------------------------------------------

    async def chatbot(self, organization_id: UUID, chatbot_id: UUID) -> Chatbot | None:
        return await self.session.scalar(
            select(Chatbot).where(Chatbot.organization_id == organization_id, Chatbot.id == chatbot_id,
                                  Chatbot.deleted_at.is_(None))
        )

    async def chatbots(self, organization_id: UUID, *, number_id: UUID | None, active: bool | None,
                       is_default: bool | None, name: str | None, limit: int, offset: int) -> Page[Chatbot]:
        query = select(Chatbot).where(Chatbot.organization_id == organization_id, Chatbot.deleted_at.is_(None))
        if number_id is not None:
            query = query.where(Chatbot.number_id == number_id)
        if active is not None:
            query = query.where(Chatbot.active.is_(active))
        if is_default is not None:
            query = query.where(Chatbot.is_default.is_(is_default))
        if name:
            query = query.where(Chatbot.name.ilike(f"%{_escape_like(name)}%", escape="\\"))
        return await _page(self.session, query.order_by(Chatbot.created_at, Chatbot.id), limit, offset)

    async def chatbots_of_number(self, organization_id: UUID, number_id: UUID) -> Sequence[Chatbot]:
        return (await self.session.scalars(
            select(Chatbot).where(Chatbot.organization_id == organization_id, Chatbot.number_id == number_id,
                                  Chatbot.deleted_at.is_(None))
        )).all()

    async def clear_default(self, organization_id: UUID, number_id: UUID, keep: UUID | None) -> None:
        query = (update(Chatbot)
                 .where(Chatbot.organization_id == organization_id, Chatbot.number_id == number_id,
                        Chatbot.is_default.is_(True), Chatbot.deleted_at.is_(None))
                 .values(is_default=False, updated_at=func.now()))
        if keep is not None:
            query = query.where(Chatbot.id != keep)
        await self.session.execute(query)

    def add(self, row: Any) -> None:
        self.session.add(row)


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_email(self, email: str) -> User | None:
        return await self.session.scalar(select(User).where(User.email == email, User.deleted_at.is_(None)))

    async def by_id(self, user_id: UUID) -> User | None:
        return await self.session.scalar(select(User).where(User.id == user_id, User.deleted_at.is_(None)))

    async def in_organization(self, organization_id: UUID, user_id: UUID) -> User | None:
        return await self.session.scalar(
            select(User).where(User.organization_id == organization_id, User.id == user_id,
                               User.deleted_at.is_(None))
        )

    async def list(self, organization_id: UUID, *, role: str | None, email: str | None, active: bool | None,
                   limit: int, offset: int) -> Page[User]:
        query = select(User).where(User.organization_id == organization_id, User.deleted_at.is_(None))
        if role:
            query = query.where(User.role == role)
        if email:
            query = query.where(User.email == email.lower())
        if active is not None:
            query = query.where(User.active.is_(active))
        return await _page(self.session, query.order_by(User.created_at, User.id), limit, offset)

    async def of_organization(self, organization_id: UUID) -> Sequence[User]:
        return (await self.session.scalars(
            select(User).where(User.organization_id == organization_id, User.deleted_at.is_(None))
        )).all()

    def add(self, row: User) -> None:
        self.session.add(row)


class RefreshTokenRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_hash(self, token_hash: str) -> RefreshToken | None:
        return await self.session.scalar(
            select(RefreshToken).where(RefreshToken.token_hash == token_hash).with_for_update()
        )

    async def revoke_session(self, session_id: UUID, now: datetime) -> None:
        await self.session.execute(
            update(RefreshToken).where(RefreshToken.session_id == session_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    async def revoke_all(self, user_id: UUID, now: datetime) -> None:
        await self.session.execute(
            update(RefreshToken).where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=now)
        )

    def add(self, row: RefreshToken) -> None:
        self.session.add(row)


class OutboxRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, topic: str, key: str, event: dict[str, Any]) -> None:
        self.session.add(OutboxRecord(topic=topic, key=key, event=event))

    async def claim(self, limit: int) -> Sequence[OutboxRecord]:
        # SKIP LOCKED: several router replicas may relay at once without publishing twice.
        return (await self.session.scalars(
            select(OutboxRecord).order_by(OutboxRecord.created_at).limit(limit).with_for_update(skip_locked=True)
        )).all()

    async def remove(self, ids: Sequence[UUID]) -> None:
        await self.session.execute(delete(OutboxRecord).where(OutboxRecord.id.in_(ids)))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
