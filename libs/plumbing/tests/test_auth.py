from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from pytake_plumbing.auth import AuthSettings, Principal, Role, decode_access_token, issue_access_token, issued_at
from pytake_plumbing.errors import ApiError

SETTINGS = AuthSettings.model_validate({"JWT_SECRET": "k" * 32})


def test_token_round_trip() -> None:
    principal = Principal(user_id=uuid4(), organization_id=uuid4(), role=Role.VIEWER)
    now, session = datetime.now(UTC), uuid4()
    decoded = decode_access_token(issue_access_token(principal, SETTINGS, now=now, session_id=session), SETTINGS)
    assert decoded == principal.model_copy(update={"session_id": session, "issued_at": issued_at(now)})


def test_expired_forged_and_garbage_tokens_are_401() -> None:
    principal = Principal(user_id=uuid4(), organization_id=uuid4(), role=Role.ORG_ADMIN)
    old = issue_access_token(principal, SETTINGS, now=datetime.now(UTC) - timedelta(hours=1))
    forged = issue_access_token(principal, AuthSettings.model_validate({"JWT_SECRET": "x" * 32}))
    for token, code in ((old, "token_expired"), (forged, "invalid_token"), ("not.a.jwt", "invalid_token")):
        with pytest.raises(ApiError) as caught:
            decode_access_token(token, SETTINGS)
        assert caught.value.status == 401 and caught.value.code == code
