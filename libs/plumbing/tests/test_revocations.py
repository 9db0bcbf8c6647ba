"""The revocation view: which access tokens the registry's announcements have ended."""

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from pytake_contracts import RegistryChanged, RegistryChangedPayload
from pytake_plumbing.auth import AuthSettings, Principal, Role, decode_access_token, issue_access_token, issued_at
from pytake_plumbing.errors import ApiError
from pytake_plumbing.revocations import RevocationView

T0 = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
TTL_S = 900


def change(entity: str, entity_id: UUID, change: str, at: datetime) -> RegistryChanged:
    return RegistryChanged(correlation_id="c", producer="router", organization_id=uuid4(),
                           payload=RegistryChangedPayload(entity=entity, entity_id=entity_id, change=change,
                                                          revoked_at=at))


def principal(user_id: UUID, issued: datetime, session_id: UUID | None = None) -> Principal:
    return Principal(user_id=user_id, organization_id=uuid4(), role=Role.ORG_ADMIN, session_id=session_id,
                     issued_at=issued.timestamp())


def view(now: datetime = T0) -> RevocationView:
    return RevocationView(TTL_S, clock=lambda: now.timestamp())


def test_tokens_issued_before_a_user_revocation_are_refused_and_later_ones_accepted() -> None:
    user, revocations = uuid4(), view()
    revocations.apply(change("user", user, "tokens_revoked", T0))
    assert revocations.refuses(principal(user, T0 - timedelta(milliseconds=1)))
    # A login in the same second, after the revocation (a password change, then a new login).
    assert not revocations.refuses(principal(user, T0 + timedelta(milliseconds=1)))
    assert not revocations.refuses(principal(uuid4(), T0 - timedelta(seconds=5)))


def test_a_deleted_user_is_refused() -> None:
    user, revocations = uuid4(), view()
    revocations.apply(change("user", user, "deleted", T0))
    assert revocations.refuses(principal(user, T0 - timedelta(seconds=1)))


def test_a_logged_out_session_is_refused_and_the_users_other_sessions_are_not() -> None:
    user, ended, other, revocations = uuid4(), uuid4(), uuid4(), view()
    revocations.apply(change("session", ended, "revoked", T0))
    assert revocations.refuses(principal(user, T0 - timedelta(seconds=1), ended))
    assert not revocations.refuses(principal(user, T0 - timedelta(seconds=1), other))


def test_other_changes_revoke_nothing() -> None:
    user, revocations = uuid4(), view()
    revocations.apply(change("user", user, "updated", T0))
    revocations.apply(change("number", user, "deleted", T0))
    assert not revocations.refuses(principal(user, T0 - timedelta(seconds=1)))
    assert len(revocations) == 0


def test_revocations_older_than_any_live_token_are_forgotten() -> None:
    old_user, new_user = uuid4(), uuid4()
    revocations = view(now=T0 + timedelta(seconds=TTL_S + 61))
    revocations.apply(change("user", old_user, "tokens_revoked", T0))
    revocations.apply(change("user", new_user, "tokens_revoked", T0 + timedelta(seconds=TTL_S + 60)))
    assert len(revocations) == 1


def test_the_principal_dependency_answers_401_for_a_revoked_token() -> None:
    from pytake_plumbing.auth import principal_dependency

    settings = AuthSettings.model_validate({"JWT_SECRET": "k" * 32})
    user, session, revocations = uuid4(), uuid4(), view()
    token = issue_access_token(Principal(user_id=user, organization_id=uuid4(), role=Role.VIEWER), settings,
                               now=datetime.now(UTC), session_id=session)
    current = principal_dependency(settings, revocations)

    class Request:
        headers = {"authorization": f"Bearer {token}"}

    assert current(Request()).session_id == session  # type: ignore[arg-type]
    revocations.apply(change("session", session, "revoked", datetime.now(UTC)))
    with pytest.raises(ApiError) as refused:
        current(Request())  # type: ignore[arg-type]
    assert refused.value.status == 401 and refused.value.code == "token_revoked"
    assert decode_access_token(token, settings).user_id == user  # the token itself is still well-formed


def test_a_token_issued_within_the_millisecond_before_a_revocation_is_refused() -> None:
    user, revocations = uuid4(), view()
    revoked = T0 + timedelta(microseconds=800)
    revocations.apply(change("user", user, "tokens_revoked", revoked))
    just_before = revoked - timedelta(microseconds=200)  # rounded to the nearest ms it would look later
    principal_then = Principal(user_id=user, organization_id=uuid4(), role=Role.VIEWER,
                               issued_at=issued_at(just_before))
    assert revocations.refuses(principal_then)
