"""Use cases of the gateway: answer Meta's handshake, and ingest a signed webhook durably, once."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import ValidationError

from pytake_contracts import Event
from pytake_contracts.topics import WEBHOOK_INBOUND, TopicSpec
from pytake_plumbing.logs import get_logger

from ..domain.signature import signature_valid
from ..domain.split import Outgoing, split_webhook
from ..domain.webhook import WebhookPayload

log = get_logger(__name__)


@dataclass(frozen=True)
class AppCredentials:
    """What a Meta app signs webhooks with, and the tokens its verification handshake may use.

    Several of each are accepted so that a secret or token can be rotated without a gap.
    """

    app_secrets: list[str]
    verify_tokens: list[str]


class SecretSource(Protocol):
    async def credentials(self, meta_app_id: str | None) -> AppCredentials | None:
        """The app's credentials; None for an app the gateway does not serve.

        `meta_app_id` is None on the path without an app id (demo mode only).
        Raises SecretsUnavailable when the registry cannot answer.
        """
        ...


@dataclass(frozen=True)
class Claim:
    claimed: set[str]  # this delivery publishes these
    in_flight: set[str]  # another delivery is publishing these right now
    # keys in neither set were already published: redeliveries


class DedupStore(Protocol):
    async def claim(self, keys: Sequence[str]) -> Claim: ...
    async def confirm(self, keys: Collection[str]) -> None: ...
    async def release(self, keys: Collection[str]) -> None: ...
    async def renew(self, keys: Collection[str]) -> None: ...


class EventSink(Protocol):
    async def publish_all(self, items: Sequence[tuple[TopicSpec, Event, str]]) -> None: ...


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


class DedupUnavailable(Exception):
    """The deduplication store could not be asked."""


@dataclass
class IngestOutcome:
    published: list[Event] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # dedup keys of redeliveries, not republished
    in_flight: list[str] = field(default_factory=list)  # being published by another delivery: ask Meta to retry
    ignored: list[str] = field(default_factory=list)
    deduplicated: bool = True  # False when the store was down and everything was published


class WebhookIngestor:
    def __init__(self, secrets: SecretSource, dedup: DedupStore, sink: EventSink, *, lease_s: float = 30.0,
                 max_unsettled: int = 1000) -> None:
        self._secrets = secrets
        self._dedup = dedup
        self._sink = sink
        self._lease_s = lease_s
        self._max_unsettled = max_unsettled
        self._unsettled: set[asyncio.Task[None]] = set()  # publishes that outlived their request

    @property
    def unsettled(self) -> int:
        return len(self._unsettled)

    async def verify_subscription(self, meta_app_id: str | None, mode: str, token: str, challenge: str) -> str | None:
        """The challenge to echo when Meta's handshake is valid, else None."""
        credentials = await self._credentials(meta_app_id)
        if mode != "subscribe":
            return None
        matched = [hmac.compare_digest(token.encode(), known.encode()) for known in credentials.verify_tokens]
        return challenge if any(matched) else None

    async def ingest(self, meta_app_id: str | None, body: bytes, signature: str | None) -> IngestOutcome:
        credentials = await self._credentials(meta_app_id)
        if not signature_valid(body, signature, credentials.app_secrets):
            raise InvalidSignature
        if len(self._unsettled) >= self._max_unsettled:
            # Kafka has been away long enough to fill our backlog: refuse before buffering more.
            raise StoreUnavailable(f"{len(self._unsettled)} earlier publishes still unacknowledged")
        try:
            payload = WebhookPayload.model_validate_json(body)
        except ValidationError as exc:
            raise MalformedPayload(_summary(exc)) from exc
        result = split_webhook(payload)
        outcome = IngestOutcome(ignored=result.ignored)
        to_publish, claimed = await self._first_deliveries(result.events, outcome)
        await self._publish(to_publish, claimed)
        outcome.published = [item.event for item in to_publish]
        return outcome

    async def _credentials(self, meta_app_id: str | None) -> AppCredentials:
        credentials = await self._secrets.credentials(meta_app_id)
        if credentials is None:
            raise UnknownApp(meta_app_id)
        return credentials

    async def _first_deliveries(self, items: list[Outgoing], outcome: IngestOutcome) -> tuple[list[Outgoing], set[str]]:
        """The events to publish now, and the dedup keys claimed for them."""
        unique: list[Outgoing] = []
        seen_here: set[str] = set()
        for item in items:
            if item.dedup_key is not None and item.dedup_key in seen_here:
                outcome.duplicates.append(item.dedup_key)  # repeated inside one POST
                continue
            if item.dedup_key is not None:
                seen_here.add(item.dedup_key)
            unique.append(item)
        if not seen_here:
            return unique, set()
        try:
            claim = await self._dedup.claim(sorted(seen_here))
        except DedupUnavailable as exc:
            # Losing a message is worse than passing a redelivery on: downstream consumers
            # are idempotent on wamid, and Meta would otherwise retry for 7 days.
            log.warning("dedup_unavailable_publishing_anyway", error=str(exc)[:300])
            outcome.deduplicated = False
            return unique, set()
        to_publish = []
        for item in unique:
            if item.dedup_key is None or item.dedup_key in claim.claimed:
                to_publish.append(item)
            elif item.dedup_key in claim.in_flight:
                outcome.in_flight.append(item.dedup_key)
            else:
                outcome.duplicates.append(item.dedup_key)
        return to_publish, claim.claimed

    async def _publish(self, items: list[Outgoing], claimed: set[str]) -> None:
        """Kafka first, then the seen-mark: a mark never outlives a publish that failed."""
        if not items:
            return
        try:
            await self._sink.publish_all([(WEBHOOK_INBOUND, item.event, item.key) for item in items])
        except PublishStillPending as pending:
            # The records may still reach Kafka: keep the claim (renewed) until we know, so that
            # Meta's retry is answered 503 meanwhile, then a duplicate once they have landed.
            self._settle_later(pending.completion, claimed)
            raise StoreUnavailable("Kafka did not acknowledge in time") from pending
        except Exception as exc:
            await self._release(claimed)
            raise StoreUnavailable(repr(exc)) from exc
        try:
            await self._dedup.confirm(claimed)
        except DedupUnavailable as exc:
            # Stored in Kafka already, so the answer is still 200; the claim's lease runs out
            # and a redelivery would be published again (at least once, never lost).
            log.warning("dedup_confirm_failed", error=str(exc)[:300])

    def _settle_later(self, completion: asyncio.Future[None], claimed: set[str]) -> None:
        task = asyncio.create_task(self._settle(completion, claimed))
        self._unsettled.add(task)
        task.add_done_callback(self._unsettled.discard)

    async def _settle(self, completion: asyncio.Future[None], claimed: set[str]) -> None:
        while not completion.done():
            await asyncio.wait({completion}, timeout=self._lease_s / 3)
            if not completion.done() and claimed:
                try:
                    await self._dedup.renew(claimed)
                except DedupUnavailable as exc:
                    log.warning("dedup_renew_failed", error=str(exc)[:300])
        if completion.cancelled() or completion.exception() is not None:
            await self._release(claimed)
            return
        log.info("late_publish_acknowledged", events=len(claimed))
        try:
            await self._dedup.confirm(claimed)
        except DedupUnavailable as exc:
            log.warning("dedup_confirm_failed", error=str(exc)[:300])

    async def _release(self, claimed: set[str]) -> None:
        if not claimed:
            return
        try:
            await self._dedup.release(claimed)
        except DedupUnavailable as exc:
            # The claim's lease runs out, then Meta's retry takes it over.
            log.warning("dedup_release_failed", error=str(exc)[:300])


def _summary(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "body"
    return f"{where}: {first.get('msg')}"
