"""The management REST API under /api/v1: thin handlers over the management use cases."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from pytake_plumbing.auth import AuthSettings, Principal, RevocationCheck, Role, principal_dependency
from pytake_plumbing.bounds import Limit, Offset  # page size and offset: bounds every API shares
from pytake_plumbing.errors import error_body

from ..adapters.db.repository import Page
from ..domain.errors import Forbidden
from ..domain.login_throttle import TooManyAttempts
from ..service.accounts import Accounts
from ..service.management import Management
from ..service.schemas import (
    NO_NUL,
    ChatbotCreate,
    ChatbotResponse,
    ChatbotUpdate,
    Digits,
    Email,
    ErrorResponse,
    LoginRequest,
    MetaAppCreate,
    MetaAppResponse,
    NumberCreate,
    NumberResponse,
    NumberUpdate,
    OrganizationCreate,
    OrganizationResponse,
    OrganizationUpdate,
    OrgRole,
    PageResponse,
    RefreshRequest,
    TokenResponse,
    UserCreate,
    UserResponse,
    UserUpdate,
)

Search = Annotated[str | None, Query(max_length=200, pattern=NO_NUL, description="Case-insensitive substring.")]
SlugFilter = Annotated[str | None, Query(max_length=100, pattern=r"^[a-z0-9-]+$")]
DigitsFilter = Annotated[Digits | None, Query()]


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorResponse} for status in statuses}


AUTHED = _errors(400, 401, 403, 422)
READ_ONE = _errors(400, 401, 403, 404, 422)
WRITE = _errors(400, 401, 403, 404, 409, 422)
CREATE = _errors(400, 401, 403, 409, 422)
# A chatbot's flow is checked with the flow engine, which may be unreachable (503).
CHATBOT_WRITE = _errors(400, 401, 403, 404, 409, 422, 503)

ORG_ROLES = (Role.ORG_ADMIN, Role.AGENT, Role.VIEWER)


def _created(singular: str, errors: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """A create's responses, with OpenAPI links from the new id to the operations that take it."""
    parameter = {f"{singular}_id": "$response.body#/id"}
    links = {f"{verb.title()}{singular.title()}": {"operationId": f"{verb}_{singular}", "parameters": parameter}
             for verb in ("get", "update", "delete")}
    return {**errors, 201: {"links": links}}


def _page(model: type[BaseModel], page: Page[Any]) -> dict[str, Any]:
    return {"items": [model.model_validate(row) for row in page.items], "total": page.total,
            "limit": page.limit, "offset": page.offset}


class Guard:
    """Authentication (a valid token of a user who still exists) and role checks."""

    def __init__(self, auth: AuthSettings, accounts: Accounts, revocations: RevocationCheck | None = None) -> None:
        decode = principal_dependency(auth, revocations)

        async def current(request: Request) -> Principal:
            return await accounts.current(decode(request))

        self.current = current

    def roles(self, *allowed: Role) -> Any:
        async def checked(principal: Principal = Depends(self.current)) -> Principal:  # noqa: B008
            if principal.role not in allowed:
                raise Forbidden("your role does not allow this")
            return principal

        return Depends(checked)


def auth_router(accounts: Accounts) -> APIRouter:
    router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

    throttled = {429: {"model": ErrorResponse, "description": "Too many login attempts: wait `Retry-After` seconds.",
                       "headers": {"Retry-After": {"description": "Seconds to wait before trying again.",
                                                   "required": True, "schema": {"type": "integer", "minimum": 1}}}}}

    @router.post("/login", response_model=TokenResponse, responses={**_errors(400, 401, 422), **throttled})
    async def login(body: LoginRequest, request: Request) -> Any:
        # The connecting peer, or X-Forwarded-For when uvicorn trusts the proxy (FORWARDED_ALLOW_IPS).
        address = request.client.host if request.client else None
        try:
            pair = await accounts.login(body.email, body.password.get_secret_value(), address)
        except TooManyAttempts as exc:
            return JSONResponse(error_body(exc.code, exc.message, {"retry_after_s": exc.retry_after_s}),
                                status_code=exc.status, headers={"Retry-After": str(exc.retry_after_s)})
        return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token,
                             expires_in=pair.expires_in)

    @router.post("/refresh", response_model=TokenResponse, responses=_errors(400, 401, 422))
    async def refresh(body: RefreshRequest) -> TokenResponse:
        pair = await accounts.refresh(body.refresh_token.get_secret_value())
        return TokenResponse(access_token=pair.access_token, refresh_token=pair.refresh_token,
                             expires_in=pair.expires_in)

    @router.post("/logout", status_code=204, response_class=Response, responses=_errors(400, 422))
    async def logout(body: RefreshRequest) -> Response:
        await accounts.logout(body.refresh_token.get_secret_value())
        return Response(status_code=204)

    return router


def organizations_router(management: Management, guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/api/v1/organizations", tags=["organizations"])
    platform = guard.roles(Role.PLATFORM_ADMIN)
    anyone = guard.roles(Role.PLATFORM_ADMIN, *ORG_ROLES)

    @router.post("", status_code=201, response_model=OrganizationResponse, responses=_created("organization", CREATE),
                 operation_id="create_organization")
    async def create(body: OrganizationCreate, _: Principal = platform) -> Any:
        return OrganizationResponse.model_validate(await management.create_organization(body))

    @router.get("", response_model=PageResponse[OrganizationResponse], responses=AUTHED,
                operation_id="list_organizations")
    async def list_(_: Principal = platform, name: Search = None, slug: SlugFilter = None, limit: Limit = 50,
                    offset: Offset = 0) -> Any:
        page = await management.list_organizations(name=name, slug=slug, limit=limit, offset=offset)
        return _page(OrganizationResponse, page)

    @router.get("/{organization_id}", response_model=OrganizationResponse, responses=READ_ONE,
                 operation_id="get_organization")
    async def get(organization_id: UUID, actor: Principal = anyone) -> Any:
        return OrganizationResponse.model_validate(await management.get_organization(actor, organization_id))

    @router.patch("/{organization_id}", response_model=OrganizationResponse, responses=WRITE,
                 operation_id="update_organization")
    async def update(organization_id: UUID, body: OrganizationUpdate, _: Principal = platform) -> Any:
        return OrganizationResponse.model_validate(await management.update_organization(organization_id, body))

    @router.delete("/{organization_id}", status_code=204, response_class=Response, responses=READ_ONE,
                 operation_id="delete_organization")
    async def delete(organization_id: UUID, _: Principal = platform) -> Response:
        await management.delete_organization(organization_id)
        return Response(status_code=204)

    @router.post("/{organization_id}/numbers", status_code=201, response_model=NumberResponse, responses=WRITE,
                 operation_id="bind_number")
    async def bind_number(organization_id: UUID, body: NumberCreate, _: Principal = platform) -> Any:
        """A number for the organization under a platform-owned Meta app (or one the organization owns)."""
        return NumberResponse.model_validate(await management.bind_number(organization_id, body))

    return router


def meta_apps_router(management: Management, guard: Guard) -> APIRouter:
    """The Meta apps whose webhooks reach PyTake: an org admin's belong to the organization, the
    platform admin's are platform-owned. Numbers join an app only by its owner."""
    router = APIRouter(prefix="/api/v1/meta-apps", tags=["meta-apps"])
    admin = guard.roles(Role.ORG_ADMIN, Role.PLATFORM_ADMIN)
    member = guard.roles(Role.PLATFORM_ADMIN, *ORG_ROLES)

    @router.post("", status_code=201, response_model=MetaAppResponse, responses=CREATE,
                 operation_id="create_meta_app")
    async def create(body: MetaAppCreate, actor: Principal = admin) -> Any:
        return MetaAppResponse.model_validate(await management.create_meta_app(actor, body.meta_app_id))

    @router.get("", response_model=PageResponse[MetaAppResponse], responses=AUTHED, operation_id="list_meta_apps")
    async def list_(actor: Principal = member, limit: Limit = 50, offset: Offset = 0) -> Any:
        return _page(MetaAppResponse, await management.list_meta_apps(actor, limit=limit, offset=offset))

    # `app_id` is PyTake's id of the app; `meta_app_id` is always Meta's own.
    @router.get("/{app_id}", response_model=MetaAppResponse, responses=READ_ONE, operation_id="get_meta_app")
    async def get(app_id: UUID, actor: Principal = member) -> Any:
        return MetaAppResponse.model_validate(await management.get_meta_app(actor, app_id))

    @router.delete("/{app_id}", status_code=204, response_class=Response, responses=WRITE,
                   operation_id="delete_meta_app")
    async def delete(app_id: UUID, actor: Principal = admin) -> Response:
        await management.delete_meta_app(actor, app_id)
        return Response(status_code=204)

    return router


def users_router(management: Management, guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/api/v1/users", tags=["users"])
    admin = guard.roles(Role.ORG_ADMIN)
    member = guard.roles(*ORG_ROLES)

    @router.post("", status_code=201, response_model=UserResponse, responses=_created("user", CREATE),
                 operation_id="create_user")
    async def create(body: UserCreate, actor: Principal = admin) -> Any:
        return UserResponse.model_validate(await management.create_user(actor, body))

    @router.get("", response_model=PageResponse[UserResponse], responses=AUTHED,
                operation_id="list_users")
    async def list_(actor: Principal = member, role: Annotated[OrgRole | None, Query()] = None,
                    email: Annotated[Email | None, Query()] = None, active: bool | None = None,
                    limit: Limit = 50, offset: Offset = 0) -> Any:
        page = await management.list_users(actor, role=role, email=email, active=active, limit=limit, offset=offset)
        return _page(UserResponse, page)

    @router.get("/{user_id}", response_model=UserResponse, responses=READ_ONE,
                 operation_id="get_user")
    async def get(user_id: UUID, actor: Principal = member) -> Any:
        return UserResponse.model_validate(await management.get_user(actor, user_id))

    @router.patch("/{user_id}", response_model=UserResponse, responses=WRITE,
                 operation_id="update_user")
    async def update(user_id: UUID, body: UserUpdate, actor: Principal = admin) -> Any:
        return UserResponse.model_validate(await management.update_user(actor, user_id, body))

    @router.delete("/{user_id}", status_code=204, response_class=Response, responses=WRITE,
                 operation_id="delete_user")
    async def delete(user_id: UUID, actor: Principal = admin) -> Response:
        await management.delete_user(actor, user_id)
        return Response(status_code=204)

    return router


def numbers_router(management: Management, guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/api/v1/numbers", tags=["numbers"])
    admin = guard.roles(Role.ORG_ADMIN)
    member = guard.roles(*ORG_ROLES)

    @router.post("", status_code=201, response_model=NumberResponse, responses=_created("number", CREATE),
                 operation_id="create_number")
    async def create(body: NumberCreate, actor: Principal = admin) -> Any:
        return NumberResponse.model_validate(await management.create_number(actor, body))

    @router.get("", response_model=PageResponse[NumberResponse], responses=AUTHED,
                operation_id="list_numbers")
    async def list_(actor: Principal = member, active: bool | None = None, phone_number_id: DigitsFilter = None,
                    meta_app_id: DigitsFilter = None, limit: Limit = 50, offset: Offset = 0) -> Any:
        page = await management.list_numbers(actor, active=active, phone_number_id=phone_number_id,
                                             meta_app_id=meta_app_id, limit=limit, offset=offset)
        return _page(NumberResponse, page)

    @router.get("/{number_id}", response_model=NumberResponse, responses=READ_ONE,
                 operation_id="get_number")
    async def get(number_id: UUID, actor: Principal = member) -> Any:
        return NumberResponse.model_validate(await management.get_number(actor, number_id))

    @router.patch("/{number_id}", response_model=NumberResponse, responses=WRITE,
                 operation_id="update_number")
    async def update(number_id: UUID, body: NumberUpdate, actor: Principal = admin) -> Any:
        return NumberResponse.model_validate(await management.update_number(actor, number_id, body))

    @router.delete("/{number_id}", status_code=204, response_class=Response, responses=READ_ONE,
                 operation_id="delete_number")
    async def delete(number_id: UUID, actor: Principal = admin) -> Response:
        await management.delete_number(actor, number_id)
        return Response(status_code=204)

    return router


def chatbots_router(management: Management, guard: Guard) -> APIRouter:
    router = APIRouter(prefix="/api/v1/chatbots", tags=["chatbots"])
    admin = guard.roles(Role.ORG_ADMIN)
    member = guard.roles(*ORG_ROLES)

    @router.post("", status_code=201, response_model=ChatbotResponse, responses=_created("chatbot", CHATBOT_WRITE),
                 operation_id="create_chatbot")
    async def create(body: ChatbotCreate, actor: Principal = admin) -> Any:
        return ChatbotResponse.model_validate(await management.create_chatbot(actor, body))

    @router.get("", response_model=PageResponse[ChatbotResponse], responses=AUTHED,
                operation_id="list_chatbots")
    async def list_(actor: Principal = member, number_id: UUID | None = None, active: bool | None = None,
                    is_default: bool | None = None, name: Search = None, limit: Limit = 50,
                    offset: Offset = 0) -> Any:
        page = await management.list_chatbots(actor, number_id=number_id, active=active, is_default=is_default,
                                              name=name, limit=limit, offset=offset)
        return _page(ChatbotResponse, page)

    @router.get("/{chatbot_id}", response_model=ChatbotResponse, responses=READ_ONE,
                 operation_id="get_chatbot")
    async def get(chatbot_id: UUID, actor: Principal = member) -> Any:
        return ChatbotResponse.model_validate(await management.get_chatbot(actor, chatbot_id))

    @router.patch("/{chatbot_id}", response_model=ChatbotResponse, responses=CHATBOT_WRITE,
                 operation_id="update_chatbot")
    async def update(chatbot_id: UUID, body: ChatbotUpdate, actor: Principal = admin) -> Any:
        return ChatbotResponse.model_validate(await management.update_chatbot(actor, chatbot_id, body))

    @router.delete("/{chatbot_id}", status_code=204, response_class=Response, responses=READ_ONE,
                 operation_id="delete_chatbot")
    async def delete(chatbot_id: UUID, actor: Principal = admin) -> Response:
        await management.delete_chatbot(actor, chatbot_id)
        return Response(status_code=204)

    return router

