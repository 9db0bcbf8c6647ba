"""Use cases on the tenant registry used by the platform itself: seeding, credentials
for the gateway and the sender, platform admins, secret-key rotation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from ..adapters.db.tables import Chatbot, Organization, User, WhatsAppNumber
from ..domain.errors import Conflict
from .changes import announce
from .management import bind_to_app
from .ports import PasswordHasher, Secrets, UnitOfWork

UowFactory = Callable[[], UnitOfWork]


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
    # Optional first org_admin of the organization.
    admin_email: str | None = None
    admin_password: str | None = None
    admin_name: str = ""


@dataclass(frozen=True)
class NumberCredentials:
    organization_id: UUID
    phone_number_id: str
    access_token: str


@dataclass(frozen=True)
class WebhookCredentials:
    meta_app_id: str
    app_secrets: list[str]
    verify_tokens: list[str]
    # Every live number bound to the app (inactive ones too: the router tells why they are not
    # served); the gateway passes on no part of a webhook for any other number.
    phone_number_ids: list[str]


async def seed_tenant(uow: UnitOfWork, box: Secrets, seed: TenantSeed,
                      passwords: PasswordHasher | None = None) -> None:
    """Create or refresh an organization with one number, its default chatbot and, optionally, an admin."""
    password_hash = None
    if seed.admin_email and seed.admin_password:
        if passwords is None:
            raise ValueError("seeding an admin needs a password hasher")
        password_hash = await passwords.hash(seed.admin_password)
    async with uow as tx:
        session = tx.registry.session
        org = await session.get(Organization, seed.organization_id)
        if org is None:
            tx.registry.add(Organization(id=seed.organization_id, name=seed.organization_name, slug=seed.slug))
            await tx.flush()
        # The operator's tool acts as the platform admin: a new app is platform-owned, so several
        # seeded organizations may share it; an app another organization owns is refused.
        await bind_to_app(tx, seed.organization_id, seed.meta_app_id, by_platform=True)
        number = await session.get(WhatsAppNumber, seed.number_id)
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
        await tx.flush()
        chatbot = await session.get(Chatbot, seed.chatbot_id)
        if chatbot is None:
            chatbot = Chatbot(id=seed.chatbot_id, organization_id=seed.organization_id, number_id=seed.number_id)
            tx.registry.add(chatbot)
        chatbot.name = seed.chatbot_name
        chatbot.flow_id = seed.flow_id
        chatbot.active = True
        chatbot.is_default = True
        if seed.admin_email and password_hash:
            email = seed.admin_email.lower()
            user = await tx.users.by_email(email)
            if user is None:
                tx.users.add(User(organization_id=seed.organization_id, email=email, name=seed.admin_name,
                                  password_hash=password_hash, role="org_admin", active=True))
            elif user.organization_id != seed.organization_id:
                raise Conflict("email is taken")
            else:
                user.password_hash, user.role, user.active = password_hash, "org_admin", True
        announce(tx, entity="number", entity_id=number.id, change="updated", organization_id=seed.organization_id,
                 phone_number_id=number.phone_number_id, meta_app_id=number.meta_app_id)
        await tx.commit()


async def create_platform_admin(uow: UnitOfWork, passwords: PasswordHasher, email: str, password: str,
                                name: str = "") -> UUID:
    """Create the platform admin, or reset its password if it exists."""
    password_hash = await passwords.hash(password)
    async with uow as tx:
        email = email.lower()
        user = await tx.users.by_email(email)
        if user is None:
            user = User(organization_id=None, email=email, name=name, password_hash=password_hash,
                        role="platform_admin", active=True)
            tx.users.add(user)
        elif user.role != "platform_admin":
            raise Conflict(f"{email} is already an organization's user")
        else:
            user.password_hash, user.active = password_hash, True
        await tx.flush()
        await tx.commit()
        return user.id


async def number_credentials(
    uow: UnitOfWork, box: Secrets, organization_id: UUID, phone_number_id: str
) -> NumberCredentials | None:
    async with uow as tx:
        number = await tx.registry.number(organization_id, phone_number_id)
        if number is None or not number.active:
            return None
        return NumberCredentials(organization_id, phone_number_id, box.open(number.access_token_enc))


async def webhook_credentials(uow: UnitOfWork, box: Secrets, meta_app_id: str) -> WebhookCredentials | None:
    """App secrets and verify tokens of every live, active number of one Meta app (deduplicated),
    and the numbers bound to it."""
    async with uow as tx:
        numbers = await tx.registry.bound_numbers_of_app(meta_app_id)
        active = [n for n in numbers if n.active]
        if not active:
            return None
        app_secrets = list(dict.fromkeys(box.open(n.app_secret_enc) for n in active))
        verify_tokens = list(dict.fromkeys(box.open(n.verify_token_enc) for n in active))
        return WebhookCredentials(meta_app_id, app_secrets, verify_tokens,
                                  sorted({n.phone_number_id for n in numbers}))


async def set_number_active(uow: UnitOfWork, organization_id: UUID, phone_number_id: str, active: bool) -> bool:
    async with uow as tx:
        number = await tx.registry.number(organization_id, phone_number_id)
        if number is None:
            return False
        number.active = active
        announce(tx, entity="number", entity_id=number.id, change="updated", organization_id=organization_id,
                 phone_number_id=number.phone_number_id, meta_app_id=number.meta_app_id)
        await tx.commit()
        return True


async def rotate_secrets(uow_factory: UowFactory, box: Secrets, chunk: int = 200) -> int:
    """Re-encrypt every stored secret (deleted numbers' too) under the newest key.

    Runs in chunks, each its own transaction; safe to re-run. Afterwards no row
    needs an older key, so it can be removed from ROUTER_SECRETS_KEYS.
    """
    rotated = 0
    after: UUID | None = None
    while True:
        async with uow_factory() as tx:
            numbers = await tx.registry.all_numbers(after, chunk)
            if not numbers:
                return rotated
            for number in numbers:
                number.verify_token_enc = box.rotate(number.verify_token_enc)
                number.app_secret_enc = box.rotate(number.app_secret_enc)
                number.access_token_enc = box.rotate(number.access_token_enc)
            await tx.commit()
            rotated += len(numbers)
            after = numbers[-1].id
