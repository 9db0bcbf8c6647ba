"""Request and response schemas of the management API (XCreate, XUpdate, XResponse).

Secrets are write-only: they appear in Create/Update models as SecretStr and in no
Response model. In an Update model, a field left out (or null) is left unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StrictBool, StringConstraints

# PostgreSQL text cannot hold NUL; saying so in the schema keeps clients (and fuzzers) honest.
# Patterns avoid \s and \S: JSON Schema's and Python's regexes disagree on what counts as space.
NO_NUL = r"^[^\x00]*$"

Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
Slug = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")]
Digits = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[0-9]+$")]
DisplayNumber = Annotated[str, StringConstraints(min_length=1, max_length=32, pattern=r"^[0-9+() .-]+$")]
Keyword = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00]*[^\x00 \t\r\n][^\x00]*$")]
Email = Annotated[str, StringConstraints(min_length=3, max_length=320, pattern=r"^[^@ \t\r\n\x00]+@[^@ \t\r\n\x00]+$"),
                  AfterValidator(str.lower)]
Password = Annotated[SecretStr, Field(min_length=8, max_length=256)]
MetaSecret = Annotated[SecretStr, Field(min_length=1, max_length=1024)]
OrgRole = Literal["org_admin", "agent", "viewer"]


class _Request(BaseModel):
    # Unknown fields are refused (a client cannot pick its organization), and so is 0 for false.
    model_config = ConfigDict(extra="forbid")


class _Response(BaseModel):
    model_config = ConfigDict(from_attributes=True)


ItemT = TypeVar("ItemT")


class PageResponse(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    total: int
    limit: int
    offset: int


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, object]] | dict[str, object] | str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


# --- auth ---------------------------------------------------------------------------


class LoginRequest(_Request):
    email: Email
    password: Annotated[SecretStr, Field(min_length=1, max_length=256)]


class RefreshRequest(_Request):
    refresh_token: Annotated[SecretStr, Field(min_length=1, max_length=512)]


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")


# --- users --------------------------------------------------------------------------


class UserCreate(_Request):
    email: Email
    name: Annotated[str, StringConstraints(max_length=200, pattern=NO_NUL)] = ""
    password: Password
    role: OrgRole = "viewer"


class UserUpdate(_Request):
    name: Annotated[str, StringConstraints(max_length=200, pattern=NO_NUL)] | None = None
    password: Password | None = None
    role: OrgRole | None = None
    active: StrictBool | None = None


class UserResponse(_Response):
    id: UUID
    organization_id: UUID | None
    email: str
    name: str
    role: str
    active: bool
    created_at: datetime
    updated_at: datetime


class AdminSeed(_Request):
    """The first org_admin of a new organization."""

    email: Email
    name: Annotated[str, StringConstraints(max_length=200, pattern=NO_NUL)] = ""
    password: Password


# --- organizations --------------------------------------------------------------------


class OrganizationCreate(_Request):
    name: Name
    slug: Slug
    admin: AdminSeed | None = None


class OrganizationUpdate(_Request):
    name: Name | None = None
    slug: Slug | None = None


class OrganizationResponse(_Response):
    id: UUID
    name: str
    slug: str
    created_at: datetime
    updated_at: datetime


# --- numbers ----------------------------------------------------------------------------


class NumberCreate(_Request):
    phone_number_id: Digits
    display_phone_number: DisplayNumber
    meta_app_id: Digits
    verify_token: MetaSecret
    app_secret: MetaSecret
    access_token: MetaSecret
    active: StrictBool = True


class NumberUpdate(_Request):
    phone_number_id: Digits | None = None
    display_phone_number: DisplayNumber | None = None
    meta_app_id: Digits | None = None
    verify_token: MetaSecret | None = None
    app_secret: MetaSecret | None = None
    access_token: MetaSecret | None = None
    active: StrictBool | None = None


class NumberResponse(_Response):
    id: UUID
    organization_id: UUID
    phone_number_id: str
    display_phone_number: str
    meta_app_id: str
    active: bool
    created_at: datetime
    updated_at: datetime


# --- Meta apps ----------------------------------------------------------------------------


class MetaAppCreate(_Request):
    meta_app_id: Digits


class MetaAppResponse(_Response):
    id: UUID
    meta_app_id: str
    organization_id: UUID | None = Field(description="The owner; null for a platform-owned app.")
    created_at: datetime
    updated_at: datetime


# --- chatbots -----------------------------------------------------------------------------


class ChatbotCreate(_Request):
    number_id: UUID
    name: Name
    flow_id: UUID
    active: StrictBool = True
    is_default: StrictBool = Field(default=False, description="The number's default chatbot (one per number).")
    start_keywords: list[Keyword] = Field(default_factory=list, max_length=50,
                                          description="An inbound text equal to one of these starts this chatbot.")


class ChatbotUpdate(_Request):
    name: Name | None = None
    flow_id: UUID | None = None
    active: StrictBool | None = None
    is_default: StrictBool | None = None
    start_keywords: list[Keyword] | None = Field(default=None, max_length=50)


class ChatbotResponse(_Response):
    id: UUID
    organization_id: UUID
    number_id: UUID
    name: str
    flow_id: UUID
    active: bool
    is_default: bool
    start_keywords: list[str]
    created_at: datetime
    updated_at: datetime


# --- internal -------------------------------------------------------------------------------


class WebhookCredentialsResponse(BaseModel):
    meta_app_id: str
    app_secrets: list[str]
    verify_tokens: list[str]
    phone_number_ids: list[str]


class CredentialsResponse(BaseModel):
    organization_id: UUID
    phone_number_id: str
    access_token: str
