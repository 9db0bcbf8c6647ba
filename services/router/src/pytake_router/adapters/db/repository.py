"""Data access for the tenant registry. Every query names its organization, except the
one that resolves an organization from a receiving phone_number_id."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ...domain.model import NumberRoute
from .tables import Chatbot, Organization, WhatsAppNumber


class RegistryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def route_for(self, phone_number_id: str) -> NumberRoute | None:
        # Tenant resolution: the receiving number is what tells us the organization.
        number = await self.session.scalar(
            select(WhatsAppNumber).where(
                WhatsAppNumber.phone_number_id == phone_number_id, WhatsAppNumber.deleted_at.is_(None)
            )
        )
        if number is None:
            return None
        chatbot = await self.session.scalar(
            select(Chatbot).where(
                Chatbot.organization_id == number.organization_id,
                Chatbot.number_id == number.id,
                Chatbot.is_default.is_(True),
                Chatbot.active.is_(True),
                Chatbot.deleted_at.is_(None),
            )
        )
        return NumberRoute(
            organization_id=number.organization_id,
            number_id=number.id,
            active=number.active,
            chatbot_id=chatbot.id if chatbot else None,
            flow_id=chatbot.flow_id if chatbot else None,
        )

    async def number(self, organization_id: UUID, phone_number_id: str) -> WhatsAppNumber | None:
        return await self.session.scalar(
            select(WhatsAppNumber).where(
                WhatsAppNumber.organization_id == organization_id,
                WhatsAppNumber.phone_number_id == phone_number_id,
                WhatsAppNumber.deleted_at.is_(None),
            )
        )

    async def organization(self, organization_id: UUID) -> Organization | None:
        return await self.session.scalar(
            select(Organization).where(Organization.id == organization_id, Organization.deleted_at.is_(None))
        )

    def add(self, row: Organization | WhatsAppNumber | Chatbot) -> None:
        self.session.add(row)
