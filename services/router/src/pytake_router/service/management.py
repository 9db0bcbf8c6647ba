"""Use cases of the management API: organizations, users, numbers, chatbots.

Every tenant use case takes the caller's Principal and works inside the caller's
organization only: another organization's id is simply not found (404), never 403,
so ids of other tenants leak nothing. Role checks happen at the HTTP edge
(`require_roles`) and, for the rules that depend on data, here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy.exc import IntegrityError

from pytake_plumbing.auth import NO_ORGANIZATION, Principal, Role

from ..adapters.db.repository import Page
from ..adapters.db.tables import Chatbot, MetaApp, Organization, User, WhatsAppNumber
from ..domain.errors import Conflict, NotFound, UnknownFlow
from .changes import announce, revoke_user_tokens
from .ports import FlowDirectory, PasswordHasher, Secrets, Transaction, UnitOfWork
from .schemas import (
    ChatbotCreate,
    ChatbotUpdate,
    NumberCreate,
    NumberUpdate,
    OrganizationCreate,
    OrganizationUpdate,
    UserCreate,
    UserUpdate,
)

UowFactory = Callable[[], UnitOfWork]

# Conflicts name the value that is taken, never whose it is.
SLUG_TAKEN = "slug is taken"
EMAIL_TAKEN = "email is taken"
PHONE_NUMBER_ID_TAKEN = "phone_number_id is taken"
META_APP_TAKEN = "meta_app_id is taken"


def _now() -> datetime:
    return datetime.now(UTC)


async def _commit(tx: Transaction, conflict: str) -> None:
    try:
        await tx.commit()
    except IntegrityError as exc:
        # A unique index lost a race (or a check we did not foresee): the client's problem, not ours.
        raise Conflict(conflict) from exc


async def _flush(tx: Transaction, conflict: str) -> None:
    try:
        await tx.flush()
    except IntegrityError as exc:
        raise Conflict(conflict) from exc


class Management:
    def __init__(self, uow: UowFactory, secrets: Secrets, passwords: PasswordHasher, flows: FlowDirectory) -> None:
        self._uow = uow
        self._secrets = secrets
        self._passwords = passwords
        self._flows = flows

    # --- organizations (platform admin; members may read their own) --------------------------

    async def create_organization(self, data: OrganizationCreate) -> Organization:
        admin_hash = await self._passwords.hash(data.admin.password.get_secret_value()) if data.admin else None
        async with self._uow() as tx:
            if await tx.registry.organization_by_slug(data.slug):
                raise Conflict(SLUG_TAKEN)
            org = Organization(name=data.name, slug=data.slug)
            tx.registry.add(org)
            await _flush(tx, SLUG_TAKEN)
            if data.admin and admin_hash:
                if await tx.users.by_email(data.admin.email):
                    raise Conflict(EMAIL_TAKEN)
                user = User(organization_id=org.id, email=data.admin.email, name=data.admin.name,
                            password_hash=admin_hash, role=Role.ORG_ADMIN.value, active=True)
                tx.users.add(user)
            announce(tx, entity="organization", entity_id=org.id, change="created", organization_id=org.id)
            await _commit(tx, "the slug or the admin's email is taken")
            return org

    async def list_organizations(self, *, name: str | None, slug: str | None, limit: int, offset: int
                                 ) -> Page[Organization]:
        async with self._uow() as tx:
            return await tx.registry.organizations(name=name, slug=slug, limit=limit, offset=offset)

    async def get_organization(self, actor: Principal, organization_id: UUID) -> Organization:
        if actor.role is not Role.PLATFORM_ADMIN and actor.organization_id != organization_id:
            raise NotFound("no such organization")
        async with self._uow() as tx:
            org = await tx.registry.organization(organization_id)
            if org is None:
                raise NotFound("no such organization")
            return org

    async def update_organization(self, organization_id: UUID, data: OrganizationUpdate) -> Organization:
        changes = data.model_dump(exclude_none=True)
        async with self._uow() as tx:
            org = await tx.registry.organization(organization_id)
            if org is None:
                raise NotFound("no such organization")
            if "slug" in changes and changes["slug"] != org.slug and await tx.registry.organization_by_slug(
                    changes["slug"]):
                raise Conflict(SLUG_TAKEN)
            for field, value in changes.items():
                setattr(org, field, value)
            announce(tx, entity="organization", entity_id=org.id, change="updated", organization_id=org.id)
            await _commit(tx, SLUG_TAKEN)
            return org

    async def delete_organization(self, organization_id: UUID) -> None:
        """Soft-delete the organization and everything it owns; its numbers stop routing at once."""
        now = _now()
        async with self._uow() as tx:
            org = await tx.registry.organization(organization_id)
            if org is None:
                raise NotFound("no such organization")
            for number in await tx.registry.numbers_of(organization_id):
                await self._delete_number_rows(tx, number, now)
            for user in await tx.users.of_organization(organization_id):
                user.deleted_at = now
                await tx.refresh_tokens.revoke_all(user.id, now)
                revoke_user_tokens(tx, user.id, organization_id, now)
            for app in await tx.registry.meta_apps_of(organization_id):
                app.deleted_at = now
            org.deleted_at = now
            announce(tx, entity="organization", entity_id=org.id, change="deleted", organization_id=org.id)
            await tx.commit()

    # --- users ---------------------------------------------------------------------------------

    async def create_user(self, actor: Principal, data: UserCreate) -> User:
        password_hash = await self._passwords.hash(data.password.get_secret_value())
        async with self._uow() as tx:
            if await tx.users.by_email(data.email):
                raise Conflict(EMAIL_TAKEN)
            user = User(organization_id=actor.organization_id, email=data.email, name=data.name,
                        password_hash=password_hash, role=data.role, active=True)
            tx.users.add(user)
            await _flush(tx, EMAIL_TAKEN)
            announce(tx, entity="user", entity_id=user.id, change="created", organization_id=actor.organization_id)
            await _commit(tx, EMAIL_TAKEN)
            return user

    async def list_users(self, actor: Principal, *, role: str | None, email: str | None, active: bool | None,
                         limit: int, offset: int) -> Page[User]:
        async with self._uow() as tx:
            return await tx.users.list(actor.organization_id, role=role, email=email, active=active, limit=limit,
                                       offset=offset)

    async def get_user(self, actor: Principal, user_id: UUID) -> User:
        async with self._uow() as tx:
            return await self._user(tx, actor, user_id)

    async def update_user(self, actor: Principal, user_id: UUID, data: UserUpdate) -> User:
        changes = data.model_dump(exclude_none=True, exclude={"password"})
        password_hash = await self._passwords.hash(data.password.get_secret_value()) if data.password else None
        async with self._uow() as tx:
            user = await self._user(tx, actor, user_id)
            if user.id == actor.user_id and (changes.get("role", user.role) != user.role
                                             or changes.get("active") is False):
                raise Conflict("you cannot demote or deactivate yourself")
            role_before = user.role
            for field, value in changes.items():
                setattr(user, field, value)
            if password_hash:
                user.password_hash = password_hash
            if password_hash or changes.get("role", role_before) != role_before or changes.get("active") is False:
                # Whoever held this user's tokens must log in again, in every service.
                now = _now()
                await tx.refresh_tokens.revoke_all(user.id, now)
                revoke_user_tokens(tx, user.id, actor.organization_id, now)
            announce(tx, entity="user", entity_id=user.id, change="updated", organization_id=actor.organization_id)
            await tx.commit()
            return user

    async def delete_user(self, actor: Principal, user_id: UUID) -> None:
        async with self._uow() as tx:
            user = await self._user(tx, actor, user_id)
            if user.id == actor.user_id:
                raise Conflict("you cannot delete yourself")
            now = _now()
            user.deleted_at = now
            await tx.refresh_tokens.revoke_all(user.id, now)
            revoke_user_tokens(tx, user.id, actor.organization_id, now)
            announce(tx, entity="user", entity_id=user.id, change="deleted", organization_id=actor.organization_id)
            await tx.commit()

    @staticmethod
    async def _user(tx: Transaction, actor: Principal, user_id: UUID) -> User:
        user = await tx.users.in_organization(actor.organization_id, user_id)
        if user is None:
            raise NotFound("no such user")
        return user

    # --- numbers -------------------------------------------------------------------------------

    async def create_number(self, actor: Principal, data: NumberCreate) -> WhatsAppNumber:
        return await self._create_number(actor.organization_id, data, by_platform=False)

    async def bind_number(self, organization_id: UUID, data: NumberCreate) -> WhatsAppNumber:
        """The platform admin registers a number for an organization, under a platform-owned app
        (a provider serving many businesses through one app) or the organization's own."""
        async with self._uow() as tx:
            if await tx.registry.organization(organization_id) is None:
                raise NotFound("no such organization")
        return await self._create_number(organization_id, data, by_platform=True)

    async def _create_number(self, organization_id: UUID, data: NumberCreate, *, by_platform: bool
                             ) -> WhatsAppNumber:
        async with self._uow() as tx:
            if await tx.registry.phone_number_id_taken(data.phone_number_id):
                raise Conflict(PHONE_NUMBER_ID_TAKEN)
            await bind_to_app(tx, organization_id, data.meta_app_id, by_platform=by_platform)
            number = WhatsAppNumber(
                organization_id=organization_id,
                phone_number_id=data.phone_number_id,
                display_phone_number=data.display_phone_number,
                meta_app_id=data.meta_app_id,
                verify_token_enc=self._secrets.seal(data.verify_token.get_secret_value()),
                app_secret_enc=self._secrets.seal(data.app_secret.get_secret_value()),
                access_token_enc=self._secrets.seal(data.access_token.get_secret_value()),
                active=data.active,
            )
            tx.registry.add(number)
            await _flush(tx, PHONE_NUMBER_ID_TAKEN)
            announce(tx, entity="number", entity_id=number.id, change="created",
                     organization_id=organization_id, phone_number_id=number.phone_number_id,
                     meta_app_id=number.meta_app_id)
            await _commit(tx, "phone_number_id or meta_app_id is taken")
            return number

    async def list_numbers(self, actor: Principal, *, active: bool | None, phone_number_id: str | None,
                           meta_app_id: str | None, limit: int, offset: int) -> Page[WhatsAppNumber]:
        async with self._uow() as tx:
            return await tx.registry.numbers(actor.organization_id, active=active, phone_number_id=phone_number_id,
                                             meta_app_id=meta_app_id, limit=limit, offset=offset)

    async def get_number(self, actor: Principal, number_id: UUID) -> WhatsAppNumber:
        async with self._uow() as tx:
            return await self._number(tx, actor, number_id)

    async def update_number(self, actor: Principal, number_id: UUID, data: NumberUpdate) -> WhatsAppNumber:
        changes = data.model_dump(exclude_none=True)
        async with self._uow() as tx:
            number = await self._number(tx, actor, number_id)
            before = (number.phone_number_id, number.meta_app_id)
            new_id = changes.get("phone_number_id")
            if new_id and new_id != number.phone_number_id and await tx.registry.phone_number_id_taken(new_id):
                raise Conflict(PHONE_NUMBER_ID_TAKEN)
            new_app = changes.get("meta_app_id")
            if new_app and new_app != number.meta_app_id:
                await bind_to_app(tx, actor.organization_id, new_app, by_platform=False)
            for secret in ("verify_token", "app_secret", "access_token"):
                if secret in changes:
                    setattr(number, f"{secret}_enc", self._secrets.seal(changes.pop(secret).get_secret_value()))
            for field, value in changes.items():
                setattr(number, field, value)
            after = (number.phone_number_id, number.meta_app_id)
            # Caches keyed by the old phone_number_id or app id must drop them too.
            for phone_number_id, meta_app_id in dict.fromkeys([before, after]):
                announce(tx, entity="number", entity_id=number.id, change="updated",
                         organization_id=actor.organization_id, phone_number_id=phone_number_id,
                         meta_app_id=meta_app_id)
            await _commit(tx, "phone_number_id or meta_app_id is taken")
            return number

    async def delete_number(self, actor: Principal, number_id: UUID) -> None:
        async with self._uow() as tx:
            number = await self._number(tx, actor, number_id)
            await self._delete_number_rows(tx, number, _now())
            await tx.commit()

    @staticmethod
    async def _delete_number_rows(tx: Transaction, number: WhatsAppNumber, now: datetime) -> None:
        """A deleted number takes its chatbots with it (they could never run again)."""
        for chatbot in await tx.registry.chatbots_of_number(number.organization_id, number.id):
            chatbot.deleted_at = now
            chatbot.is_default = False
        number.deleted_at = now
        announce(tx, entity="number", entity_id=number.id, change="deleted", organization_id=number.organization_id,
                 phone_number_id=number.phone_number_id, meta_app_id=number.meta_app_id)

    @staticmethod
    async def _number(tx: Transaction, actor: Principal, number_id: UUID) -> WhatsAppNumber:
        number = await tx.registry.number_by_id(actor.organization_id, number_id)
        if number is None:
            raise NotFound("no such number")
        return number

    # --- Meta apps -----------------------------------------------------------------------------
    # An org admin's apps belong to the organization; the platform admin's are platform-owned.

    async def create_meta_app(self, actor: Principal, meta_app_id: str) -> MetaApp:
        async with self._uow() as tx:
            if await tx.registry.meta_app(meta_app_id) is not None:
                raise Conflict(META_APP_TAKEN)
            app = MetaApp(meta_app_id=meta_app_id, organization_id=_owner(actor))
            tx.registry.add(app)
            await _flush(tx, META_APP_TAKEN)
            _announce_app(tx, app, "created")
            await _commit(tx, META_APP_TAKEN)
            return app

    async def list_meta_apps(self, actor: Principal, *, limit: int, offset: int) -> Page[MetaApp]:
        async with self._uow() as tx:
            return await tx.registry.meta_apps(_owner(actor), limit=limit, offset=offset)

    async def get_meta_app(self, actor: Principal, app_id: UUID) -> MetaApp:
        async with self._uow() as tx:
            return await self._meta_app(tx, actor, app_id)

    async def delete_meta_app(self, actor: Principal, app_id: UUID) -> None:
        async with self._uow() as tx:
            app = await self._meta_app(tx, actor, app_id)
            if await tx.registry.numbers_of_app(app.meta_app_id):
                raise Conflict("the Meta app still has numbers; delete them first")
            app.deleted_at = _now()
            _announce_app(tx, app, "deleted")
            await tx.commit()

    @staticmethod
    async def _meta_app(tx: Transaction, actor: Principal, app_id: UUID) -> MetaApp:
        app = await tx.registry.meta_app_by_id(_owner(actor), app_id)
        if app is None:
            raise NotFound("no such Meta app")
        return app

    # --- chatbots ------------------------------------------------------------------------------

    async def create_chatbot(self, actor: Principal, data: ChatbotCreate) -> Chatbot:
        async with self._uow() as tx:
            number = await self._number(tx, actor, data.number_id)
            await self._require_flow(actor, data.flow_id)
            if data.is_default:
                await tx.registry.clear_default(actor.organization_id, number.id, keep=None)
            chatbot = Chatbot(organization_id=actor.organization_id, number_id=number.id, name=data.name,
                              flow_id=data.flow_id, active=data.active, is_default=data.is_default,
                              start_keywords=_unique(data.start_keywords))
            tx.registry.add(chatbot)
            await _flush(tx, "the number already has a default chatbot")
            announce(tx, entity="chatbot", entity_id=chatbot.id, change="created",
                     organization_id=actor.organization_id, phone_number_id=number.phone_number_id)
            await _commit(tx, "the number already has a default chatbot")
            return chatbot

    async def list_chatbots(self, actor: Principal, *, number_id: UUID | None, active: bool | None,
                            is_default: bool | None, name: str | None, limit: int, offset: int) -> Page[Chatbot]:
        async with self._uow() as tx:
            return await tx.registry.chatbots(actor.organization_id, number_id=number_id, active=active,
                                              is_default=is_default, name=name, limit=limit, offset=offset)

    async def get_chatbot(self, actor: Principal, chatbot_id: UUID) -> Chatbot:
        async with self._uow() as tx:
            return await self._chatbot(tx, actor, chatbot_id)

    async def update_chatbot(self, actor: Principal, chatbot_id: UUID, data: ChatbotUpdate) -> Chatbot:
        changes = data.model_dump(exclude_none=True)
        async with self._uow() as tx:
            chatbot = await self._chatbot(tx, actor, chatbot_id)
            number = await self._number(tx, actor, chatbot.number_id)
            if "flow_id" in changes:
                await self._require_flow(actor, changes["flow_id"])
            if changes.get("is_default"):
                await tx.registry.clear_default(actor.organization_id, number.id, keep=chatbot.id)
                await tx.flush()
            if "start_keywords" in changes:
                changes["start_keywords"] = _unique(changes["start_keywords"])
            for field, value in changes.items():
                setattr(chatbot, field, value)
            announce(tx, entity="chatbot", entity_id=chatbot.id, change="updated",
                     organization_id=actor.organization_id, phone_number_id=number.phone_number_id)
            await _commit(tx, "the number already has a default chatbot")
            return chatbot

    async def _require_flow(self, actor: Principal, flow_id: UUID) -> None:
        # Flows live in the flow engine's database: only it knows whether this one is the caller's.
        # Another organization's flow "does not exist" either, so other tenants' ids leak nothing.
        if not await self._flows.flow_exists(actor.organization_id, flow_id):
            raise UnknownFlow(f"flow {flow_id} does not exist in your organization")

    async def delete_chatbot(self, actor: Principal, chatbot_id: UUID) -> None:
        async with self._uow() as tx:
            chatbot = await self._chatbot(tx, actor, chatbot_id)
            number = await self._number(tx, actor, chatbot.number_id)
            chatbot.deleted_at = _now()
            chatbot.is_default = False
            announce(tx, entity="chatbot", entity_id=chatbot.id, change="deleted",
                     organization_id=actor.organization_id, phone_number_id=number.phone_number_id)
            await tx.commit()

    @staticmethod
    async def _chatbot(tx: Transaction, actor: Principal, chatbot_id: UUID) -> Chatbot:
        chatbot = await tx.registry.chatbot(actor.organization_id, chatbot_id)
        if chatbot is None:
            raise NotFound("no such chatbot")
        return chatbot


def _owner(actor: Principal) -> UUID | None:
    """The organization whose apps the actor sees; None (all of them) for the platform admin."""
    return None if actor.role is Role.PLATFORM_ADMIN else actor.organization_id


def _announce_app(tx: Transaction, app: MetaApp, change: str) -> None:
    # The gateway drops the app's cached secrets.
    announce(tx, entity="meta_app", entity_id=app.id, change=change,
             organization_id=app.organization_id or NO_ORGANIZATION, meta_app_id=app.meta_app_id)


async def bind_to_app(tx: Transaction, organization_id: UUID, meta_app_id: str, *, by_platform: bool) -> None:
    """A number may join a Meta app only by the app's owner: its secret then verifies webhooks
    routed to the owner's numbers and nobody else's. An app nobody has registered yet is claimed
    by the first organization that uses it (by the platform, when the platform admin does)."""
    app = await tx.registry.meta_app(meta_app_id)
    if app is None:
        app = MetaApp(meta_app_id=meta_app_id, organization_id=None if by_platform else organization_id)
        tx.registry.add(app)
        await _flush(tx, META_APP_TAKEN)
        _announce_app(tx, app, "created")
    elif app.organization_id != organization_id and not (by_platform and app.organization_id is None):
        raise Conflict(META_APP_TAKEN)


def _unique(keywords: list[str]) -> list[str]:
    return list(dict.fromkeys(k.strip() for k in keywords))
