"""Which access tokens the registry has revoked, known to every service without asking the router.

The router announces on its registry topic when a user's tokens end (deleted, deactivated, demoted,
password changed, a refresh token replayed) and when a session ends (logout). Every process with
an API follows that topic and refuses such tokens: a revocation reaches every service in the time
the topic takes to deliver it (well under a second), not at the token's expiry.

Only revocations younger than the access-token lifetime matter (older tokens have expired), so
a process starting up reads the topic from that far back, and is not ready before it has read
up to the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

from pytake_contracts import Event, RegistryChanged
from pytake_contracts.topics import REGISTRY_CHANGES

from .auth import Principal
from .consumer import Consumer, Subscription, each
from .settings import CommonSettings


class RevocationView:
    def __init__(self, token_ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self._ttl_s = token_ttl_s
        self._clock = clock
        self._users: dict[UUID, float] = {}  # user id -> tokens issued before this instant are refused
        self._sessions: dict[UUID, float] = {}  # session id -> when it ended

    def apply(self, change: RegistryChanged) -> None:
        payload = change.payload
        revoked_at = (payload.revoked_at or change.occurred_at).timestamp()
        if payload.entity == "user" and payload.change in ("tokens_revoked", "deleted"):
            self._users[payload.entity_id] = max(revoked_at, self._users.get(payload.entity_id, 0.0))
        elif payload.entity == "session" and payload.change == "revoked":
            self._sessions[payload.entity_id] = revoked_at
        else:
            return
        self._forget_expired()

    def refuses(self, principal: Principal) -> bool:
        revoked_at = self._users.get(principal.user_id)
        if revoked_at is not None and (principal.issued_at is None or principal.issued_at < revoked_at):
            return True
        return principal.session_id is not None and principal.session_id in self._sessions

    def __len__(self) -> int:
        return len(self._users) + len(self._sessions)

    def _forget_expired(self) -> None:
        # Every token issued before this has expired: its revocation need not be remembered.
        horizon = self._clock() - self._ttl_s - 60
        for entries in (self._users, self._sessions):
            for key in [key for key, at in entries.items() if at < horizon]:
                del entries[key]


def revocation_feed(settings: CommonSettings, view: RevocationView, token_ttl_s: float) -> Consumer:
    """Keeps `view` up to date from the registry topic: a broadcast from a token lifetime back, whose
    `ready` says it has read up to where the topic ended when it started."""
    async def apply(event: Event) -> None:
        assert isinstance(event, RegistryChanged)
        view.apply(event)

    return Consumer(settings, Subscription([REGISTRY_CHANGES], group="revocations", handler=each(apply), batch=1,
                                           accepts=(RegistryChanged,), broadcast=True, since_s=token_ttl_s + 60),
                    dead_letters=None)
