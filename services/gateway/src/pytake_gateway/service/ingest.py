"""Use cases of the gateway: verify Meta's handshake, and ingest a signed webhook durably."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError

from pytake_contracts import Event
from pytake_contracts.topics import WEBHOOK_INBOUND, TopicSpec

from ..domain.signature import signature_valid
from ..domain.split import split_webhook
from ..domain.webhook import WebhookPayload


class SecretSource(Protocol):
    async def app_secrets(self) -> list[str]: ...
    async def verify_tokens(self) -> list[str]: ...


class EventSink(Protocol):
    async def publish_all(self, items: Sequence[tuple[TopicSpec, Event, str]]) -> None: ...


class InvalidSignature(Exception):
    pass


class MalformedPayload(Exception):
    pass


class StoreUnavailable(Exception):
    """Kafka did not acknowledge; the webhook must be refused so Meta retries it."""


@dataclass(frozen=True)
class IngestOutcome:
    published: int
    ignored: list[str]


async def verify_subscription(mode: str, token: str, challenge: str, secrets: SecretSource) -> str | None:
    """The challenge to echo when Meta's handshake is valid, else None."""
    if mode != "subscribe":
        return None
    candidates = await secrets.verify_tokens()
    matched = [hmac.compare_digest(token.encode(), known.encode()) for known in candidates]
    return challenge if any(matched) else None


async def ingest_webhook(body: bytes, signature: str | None, secrets: SecretSource, sink: EventSink) -> IngestOutcome:
    if not signature_valid(body, signature, await secrets.app_secrets()):
        raise InvalidSignature
    try:
        payload = WebhookPayload.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedPayload(_summary(exc)) from exc
    result = split_webhook(payload)
    try:
        await sink.publish_all([(WEBHOOK_INBOUND, event, key) for event, key in result.events])
    except Exception as exc:
        raise StoreUnavailable(repr(exc)) from exc
    return IngestOutcome(published=len(result.events), ignored=result.ignored)


def _summary(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg')}"
