"""Use cases of the gateway's front door: answer Meta's handshake, and store a signed webhook durably."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from uuid import uuid4

from pydantic import ValidationError

from pytake_contracts import DeadLettered, DeadLetterPayload, Event, WebhookReceived, WebhookReceivedPayload
from pytake_contracts.topics import DEAD_LETTERS, WEBHOOK_INTAKE, TopicSpec
from pytake_plumbing.logs import get_logger
from pytake_plumbing.tracing import current_trace_context

from ..domain.intake import IntakePart, plan_intake
from ..domain.signature import signature_valid
from ..domain.split import PRODUCER
from ..domain.webhook import WebhookPayload

log = get_logger(__name__)


@dataclass(frozen=True)
class AppCredentials:
    """What a Meta app signs webhooks with, and the tokens its verification handshake may use.

    Several of each are accepted so that a secret or token can be rotated without a gap.
    """

    app_secrets: list[str]
    verify_tokens: list[str]
    # The business numbers bound to the app: a webhook part for any other number is not passed on,
    # so holding one app's secret reaches no other app's numbers. None: any number (demo mode).
    phone_number_ids: frozenset[str] | None = None


class SecretSource(Protocol):
    async def credentials(self, meta_app_id: str | None) -> AppCredentials | None:
        """The app's credentials; None for an app the gateway does not serve.

        `meta_app_id` is None on the path without an app id (demo mode only).
        Raises SecretsUnavailable when the registry cannot answer.
        """
        ...


Outgoing = tuple[TopicSpec, Event, str]


class EventSink(Protocol):
    def publish_all(self, items: Sequence[Outgoing]) -> Awaitable[None]:
        """Done once Kafka acknowledged every record."""
        ...


class UnknownApp(Exception):
    pass


class SecretsUnavailable(Exception):
    """The registry could not be asked; the webhook must be refused so Meta retries it."""


class InvalidSignature(Exception):
    pass


class MalformedPayload(Exception):
    pass


class StoreUnavailable(Exception):
    """Kafka did not acknowledge; the webhook must be refused so Meta retries it."""


class PublishStillPending(Exception):
    """Kafka did not acknowledge in time, but the records may still get there: `completion` tells."""

    def __init__(self, completion: asyncio.Future[None]) -> None:
        super().__init__("publish still pending")
        self.completion = completion


@dataclass
class IngestOutcome:
    stored: list[WebhookReceived] = field(default_factory=list)  # one per business number in the POST
    ignored: list[str] = field(default_factory=list)


class WebhookIngestor:
    """Stores every signed webhook in the intake topic before it is acknowledged.

    Splitting and deduplication happen behind the intake (service/forward.py), off the
    path Meta waits on: a redelivery is stored again, and never forwarded twice.
    """

    def __init__(self, secrets: SecretSource, sink: EventSink, *, max_unsettled: int = 1000) -> None:
        self._secrets = secrets
        self._sink = sink
        self._max_unsettled = max_unsettled
        self._unsettled = 0  # publishes that outlived their request (Kafka slow or away)

    @property
    def unsettled(self) -> int:
        return self._unsettled

    async def verify_subscription(self, meta_app_id: str | None, mode: str, token: str, challenge: str) -> str | None:
        """The challenge to echo when Meta's handshake is valid, else None."""
        credentials = await self._credentials(meta_app_id)
        if mode != "subscribe":
            return None
        matched = [hmac.compare_digest(token.encode(), known.encode()) for known in credentials.verify_tokens]
        return challenge if any(matched) else None

    async def ingest(self, meta_app_id: str | None, body: bytes, signature: str | None,
                     trace_context: dict[str, str] | None = None) -> IngestOutcome:
        """`trace_context` is the webhook's (W3C headers); the current span's when not given."""
        credentials = await self._credentials(meta_app_id)
        if not signature_valid(body, signature, credentials.app_secrets):
            raise InvalidSignature
        try:
            payload = WebhookPayload.model_validate_json(body)
        except ValidationError as exc:
            raise MalformedPayload(_summary(exc)) from exc
        plan = plan_intake(payload, body)
        parts, foreign = _bound_to_app(plan.parts, credentials.phone_number_ids)
        outcome = IngestOutcome(ignored=plan.ignored + [f"number_not_bound_to_app:{part.phone_number_id}"
                                                        for part in foreign])
        refused: list[Outgoing] = []
        if foreign:
            # Answered 200 all the same (Meta would retry it for 7 days, and it will never be routable);
            # the part is kept as a dead letter with its reason, where audit and operators see it.
            log.warning("webhook_for_foreign_number", meta_app_id=meta_app_id,
                        phone_number_ids=[part.phone_number_id for part in foreign][:20])
            refused = [(DEAD_LETTERS, _not_bound(part, meta_app_id), part.phone_number_id) for part in foreign]
        if parts:
            if trace_context is None:
                trace_context = current_trace_context()
            outcome.stored = [_received(part, meta_app_id, trace_context) for part in parts]
        stored: list[Outgoing] = [(WEBHOOK_INTAKE, event, part.phone_number_id)
                                  for event, part in zip(outcome.stored, parts, strict=True)]
        if stored or refused:
            await self._store(stored + refused)
        return outcome

    async def _credentials(self, meta_app_id: str | None) -> AppCredentials:
        credentials = await self._secrets.credentials(meta_app_id)
        if credentials is None:
            raise UnknownApp(meta_app_id)
        return credentials

    async def _store(self, items: list[Outgoing]) -> None:
        if self._unsettled >= self._max_unsettled:
            # Kafka has been away long enough to fill our backlog: refuse before buffering more.
            raise StoreUnavailable(f"{self._unsettled} earlier publishes still unacknowledged")
        try:
            await self._sink.publish_all(items)
        except PublishStillPending as pending:
            # The records may still reach Kafka (the idempotent producer keeps them): Meta's retry
            # is stored again, and the forwarder passes on whichever copy comes first.
            self._unsettled += 1
            pending.completion.add_done_callback(self._settled)
            raise StoreUnavailable("Kafka did not acknowledge in time") from pending
        except Exception as exc:
            raise StoreUnavailable(repr(exc)) from exc

    def _settled(self, completion: asyncio.Future[None]) -> None:
        self._unsettled -= 1
        if not completion.cancelled() and completion.exception() is None:
            log.info("late_publish_acknowledged")


def _bound_to_app(parts: list[IntakePart], bound: frozenset[str] | None) -> tuple[list[IntakePart], list[IntakePart]]:
    """The parts for numbers bound to the app, and those for any other number."""
    if bound is None:
        return parts, []
    return [p for p in parts if p.phone_number_id in bound], [p for p in parts if p.phone_number_id not in bound]


# The dead-letter topic takes Kafka's default record size, and the record is evidence, not work to redo.
MAX_REFUSED_ORIGINAL_CHARS = 100_000


def _not_bound(part: IntakePart, meta_app_id: str | None) -> DeadLettered:
    return DeadLettered(correlation_id=str(uuid4()), producer=PRODUCER, payload=DeadLetterPayload(
        origin_topic=WEBHOOK_INTAKE.name, consumer=PRODUCER, attempts=1, key=part.phone_number_id,
        original=part.body[:MAX_REFUSED_ORIGINAL_CHARS],
        error=f"number_not_bound_to_app: signed by Meta app {meta_app_id}, which number {part.phone_number_id} "
              "is not bound to"))


def _received(part: IntakePart, meta_app_id: str | None, trace_context: dict[str, str]) -> WebhookReceived:
    return WebhookReceived(
        correlation_id=str(uuid4()),
        producer=PRODUCER,
        traceparent=trace_context.get("traceparent"),
        tracestate=trace_context.get("tracestate"),
        payload=WebhookReceivedPayload(phone_number_id=part.phone_number_id, meta_app_id=meta_app_id, body=part.body),
    )


def _summary(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg')}"
