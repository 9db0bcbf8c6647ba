"""Login, refresh and logout; and checking that a token's user still exists.

Access tokens are short-lived JWTs. Refresh tokens are opaque and single-use: each
refresh spends one and returns a new pair. Presenting a spent token again means it
leaked, so every refresh token of that user is revoked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

from pytake_plumbing.auth import (
    NO_ORGANIZATION,
    AuthSettings,
    Principal,
    Role,
    issue_access_token,
    new_refresh_token,
    refresh_token_hash,
)
from pytake_plumbing.logs import get_logger

from ..adapters.db.tables import RefreshToken, User
from ..domain.errors import Unauthenticated
from .changes import revoke_session, revoke_user_tokens
from .login_throttle import LoginThrottle
from .ports import PasswordHasher, Transaction, UnitOfWork

log = get_logger(__name__)
UowFactory = Callable[[], UnitOfWork]


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


def principal_of(user: User) -> Principal:
    return Principal(user_id=user.id, organization_id=user.organization_id or NO_ORGANIZATION, role=Role(user.role))


class Accounts:
    def __init__(self, uow: UowFactory, passwords: PasswordHasher, settings: AuthSettings,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 throttle: LoginThrottle | None = None) -> None:
        self._uow = uow
        self._throttle = throttle or LoginThrottle(uow, clock=clock)
        self._passwords = passwords
        self._settings = settings
        self._clock = clock

    async def login(self, email: str, password: str, address: str | None = None) -> TokenPair:
        # Charged before the password is checked; raises TooManyAttempts (429), the same for any email.
        admission = await self._throttle.admit(email, address)
        async with self._uow() as tx:
            user = await tx.users.by_email(email.lower())
            # Verified even for an unknown email, so timing tells nothing about who exists.
            ok = await self._passwords.verify(user.password_hash if user else None, password)
            if user is None or not ok or not user.active:
                log.info("login_refused")
                raise Unauthenticated("wrong email or password")
            pair = self._issue(tx, user)
            await self._throttle.succeeded(tx, admission)
            await tx.commit()
            log.info("login", user_id=str(user.id))
            return pair

    async def refresh(self, refresh_token: str) -> TokenPair:
        now = self._clock()
        async with self._uow() as tx:
            row = await tx.refresh_tokens.by_hash(refresh_token_hash(refresh_token))
            if row is None:
                raise Unauthenticated("unknown refresh token")
            if row.revoked_at is not None:
                await tx.refresh_tokens.revoke_all(row.user_id, now)
                # A replayed refresh token has leaked: the access tokens it bought end too.
                reused_by = await tx.users.by_id(row.user_id)
                revoke_user_tokens(tx, row.user_id, reused_by.organization_id if reused_by else None, now)
                await tx.commit()
                log.warning("refresh_token_reused", user_id=str(row.user_id))
                raise Unauthenticated("refresh token already used")
            if row.expires_at <= now:
                raise Unauthenticated("refresh token expired")
            user = await tx.users.by_id(row.user_id)
            if user is None or not user.active:
                raise Unauthenticated("the user no longer exists")
            row.revoked_at = now
            pair = self._issue(tx, user, session_id=row.session_id)
            await tx.commit()
            return pair

    async def logout(self, refresh_token: str) -> None:
        """End the session the refresh token belongs to: its refresh tokens and its access tokens."""
        async with self._uow() as tx:
            row = await tx.refresh_tokens.by_hash(refresh_token_hash(refresh_token))
            if row is not None and row.revoked_at is None:
                now = self._clock()
                await tx.refresh_tokens.revoke_session(row.session_id, now)
                user = await tx.users.by_id(row.user_id)
                revoke_session(tx, row.session_id, user.organization_id if user else None, now)
                await tx.commit()

    async def current(self, claimed: Principal) -> Principal:
        """The token's user as the registry knows it now: deleted or deactivated users lose access at
        once, and a changed role applies to the next request."""
        async with self._uow() as tx:
            user = await tx.users.by_id(claimed.user_id)
        if user is None or not user.active or (user.organization_id or NO_ORGANIZATION) != claimed.organization_id:
            raise Unauthenticated("the user no longer exists")
        return principal_of(user)

    def _issue(self, tx: Transaction, user: User, session_id: UUID | None = None) -> TokenPair:
        """A new pair; a login starts a new session, a refresh continues its own."""
        now = self._clock()
        session_id = session_id or uuid4()
        refresh = new_refresh_token()
        tx.refresh_tokens.add(RefreshToken(user_id=user.id, session_id=session_id,
                                           token_hash=refresh_token_hash(refresh),
                                           expires_at=now + timedelta(seconds=self._settings.refresh_ttl_s)))
        access = issue_access_token(principal_of(user), self._settings, now=now, session_id=session_id)
        return TokenPair(access, refresh, self._settings.access_ttl_s)
