"""Meta's X-Hub-Signature-256: HMAC-SHA256 of the raw body, keyed with the app secret."""

from __future__ import annotations

import hashlib
import hmac


def sign(body: bytes, app_secret: str) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def signature_valid(body: bytes, header: str | None, app_secrets: list[str]) -> bool:
    """True when the header matches the body under any of the app's current secrets.

    Several secrets are accepted so an app secret can be rotated without dropping webhooks.
    """
    if not header or not header.startswith("sha256="):
        return False
    given = header.encode()
    # compare_digest on every candidate, so timing does not reveal which one matched.
    matches = [hmac.compare_digest(given, sign(body, secret).encode()) for secret in app_secrets]
    return any(matches)
