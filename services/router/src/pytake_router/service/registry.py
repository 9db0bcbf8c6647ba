"""Use cases on the tenant registry used by the platform itself (seeding, credentials)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from ..adapters.crypto import SecretBox
from ..adapters.db.tables import Chatbot, Organization, WhatsAppNumber
from ..adapters.db.unit_of_work import SqlUnitOfWork


class UnitOfWork(Protocol):
    async def __aenter__(self) -> SqlUnitOfWork: ...
    async def __aexit__(self, *exc: object) -> None: ...


@dataclass(frozen=True)
class TenantSeed:
    organization_id: UUID
    organization_name: str
    slug: str
    number_id: UUID
    phone_number_id: str
    display_phone_number: str
    meta_app_id: str
    verify_token: str
    app_secret: str
    access_token: str
    chatbot_id: UUID
    chatbot_name: str
    flow_id: UUID


@dataclass(frozen=True)
class NumberCredentials:
    organization_id: UUID
    phone_number_id: str
    access_token: str


async def seed_tenant(uow: UnitOfWork, box: SecretBox, seed: TenantSeed) -> None:
    """Create or refresh an organization with one number and its default chatbot."""
    async with uow as tx:
        org = await tx.session.get(Organization, seed.organization_id)
        if org is None:
            tx.registry.add(Organization(id=seed.organization_id, name=seed.organization_name, slug=seed.slug))
            await tx.session.flush()
        number = await tx.session.get(WhatsAppNumber, seed.number_id)
        if number is None:
            number = WhatsAppNumber(id=seed.number_id, organization_id=seed.organization_id)
            tx.registry.add(number)
        number.phone_number_id = seed.phone_number_id
        number.display_phone_number = seed.display_phone_number
        number.meta_app_id = seed.meta_app_id
        number.verify_token_enc = box.seal(seed.verify_token)
        number.app_secret_enc = box.seal(seed.app_secret)
        number.access_token_enc = box.seal(seed.access_token)
        number.active = True
        await tx.session.flush()
        chatbot = await tx.session.get(Chatbot, seed.chatbot_id)
        if chatbot is None:
            chatbot = Chatbot(id=seed.chatbot_id, organization_id=seed.organization_id, number_id=seed.number_id)
            tx.registry.add(chatbot)
        chatbot.name = seed.chatbot_name
        chatbot.flow_id = seed.flow_id
        chatbot.active = True
        chatbot.is_default = True
        await tx.commit()


async def number_credentials(
    uow: UnitOfWork, box: SecretBox, organization_id: UUID, phone_number_id: str
) -> NumberCredentials | None:
    async with uow as tx:
        number = await tx.registry.number(organization_id, phone_number_id)
        if number is None or not number.active:
            return None
        return NumberCredentials(organization_id, phone_number_id, box.open(number.access_token_enc))


async def set_number_active(uow: UnitOfWork, organization_id: UUID, phone_number_id: str, active: bool) -> bool:
    async with uow as tx:
        number = await tx.registry.number(organization_id, phone_number_id)
        if number is None:
            return False
        number.active = active
        await tx.commit()
        return True
