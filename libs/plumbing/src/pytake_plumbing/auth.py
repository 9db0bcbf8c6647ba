"""JWT authentication shared by every service's REST API.

Tokens are issued by the router (login) and verified everywhere with the same key.
Claims: sub (user id), org (organization id), role.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Callable
from typing import Protocol
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from uuid import UUID, uuid4

import jwt
from fastapi import Depends, Request
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ApiError


class Role(StrEnum):
    PLATFORM_ADMIN = "platform_admin"
    ORG_ADMIN = "org_admin"
    AGENT = "agent"
    VIEWER = "viewer"


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    jwt_secret: SecretStr = Field(alias="JWT_SECRET")
    jwt_issuer: str = Field(default="pytake", alias="JWT_ISSUER")
    access_ttl_s: int = Field(default=900, alias="JWT_ACCESS_TTL_S")
    refresh_ttl_s: int = Field(default=30 * 24 * 3600, alias="JWT_REFRESH_TTL_S")


class Principal(BaseModel):
    user_id: UUID
    organization_id: UUID
    role: Role
    # From the token: the login it belongs to and when it was issued, so a revoked session or
    # a user whose tokens were revoked is refused (see revocations.py).
    session_id: UUID | None = None
    issued_at: float | None = None

    def can_write(self) -> bool:
        return self.role in (Role.PLATFORM_ADMIN, Role.ORG_ADMIN, Role.AGENT)


ALGORITHM = "HS256"

# Platform admins belong to no organization; their tokens carry this one, which owns nothing.
NO_ORGANIZATION = UUID(int=0)


def issued_at(now: datetime) -> float:
    """Milliseconds (RFC 7519 allows a fraction): a login right after a revocation, in the same
    second, must not look older than the revocation. Rounded down, so a token issued before a
    revocation never looks newer than it."""
    return math.floor(now.timestamp() * 1000) / 1000


def issue_access_token(principal: Principal, settings: AuthSettings, now: datetime | None = None,
                       session_id: UUID | None = None) -> str:
    now = now or datetime.now(UTC)
    claims = {
        "sub": str(principal.user_id),
        "org": str(principal.organization_id),
        "role": principal.role.value,
        "iss": settings.jwt_issuer,
        "iat": issued_at(now),
        "exp": int((now + timedelta(seconds=settings.access_ttl_s)).timestamp()),
        "jti": uuid4().hex,
        "typ": "access",
    }
    if session_id is not None:
        claims["sid"] = str(session_id)
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


def decode_access_token(token: str, settings: AuthSettings) -> Principal:
    try:
        claims = jwt.decode(token, settings.jwt_secret.get_secret_value(), algorithms=[ALGORITHM],
                            issuer=settings.jwt_issuer, options={"require": ["exp", "sub", "org", "role"]})
    except jwt.ExpiredSignatureError as exc:
        raise ApiError(401, "token_expired", "the access token has expired") from exc
    except jwt.PyJWTError as exc:
        raise ApiError(401, "invalid_token", "the access token is not valid") from exc
    if claims.get("typ", "access") != "access":
        raise ApiError(401, "invalid_token", "not an access token")
    try:
        return Principal(user_id=claims["sub"], organization_id=claims["org"], role=claims["role"],
                         session_id=claims.get("sid"), issued_at=claims.get("iat"))
    except ValueError as exc:
        raise ApiError(401, "invalid_token", "the access token has invalid claims") from exc


def new_refresh_token() -> str:
    """An opaque refresh token: random, so only its hash needs storing (and can be revoked)."""
    return secrets.token_urlsafe(32)


def refresh_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RevocationCheck(Protocol):
    def refuses(self, principal: Principal) -> bool: ...


def principal_dependency(settings: AuthSettings, revocations: RevocationCheck | None = None
                         ) -> Callable[[Request], Principal]:
    """A FastAPI dependency: the caller's principal from `Authorization: Bearer …`, else 401.

    With `revocations`, a token the registry has revoked (logout, deleted, deactivated or demoted
    user, changed password) is refused too, without asking the router.
    """

    def current(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthenticated", "a Bearer access token is required")
        principal = decode_access_token(token, settings)
        if revocations is not None and revocations.refuses(principal):
            raise ApiError(401, "token_revoked", "the access token has been revoked")
        return principal

    return current


def require_roles(current: Callable[[Request], Principal], *roles: Role) -> Callable[..., Principal]:
    """A dependency that also demands one of `roles` (403 otherwise)."""

    # A default, not Annotated: with PEP 563 string annotations FastAPI cannot see `current`
    # (a local of this function) and would take `principal` for a query parameter.
    def checked(principal: Principal = Depends(current)) -> Principal:  # noqa: B008
        if principal.role not in roles:
            raise ApiError(403, "forbidden", "your role does not allow this")
        return principal

    return checked
