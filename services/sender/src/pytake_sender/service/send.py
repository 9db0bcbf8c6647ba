"""Use case: send one outbound request through the Graph API, exactly once.

The request's record in PostgreSQL is claimed before the call and resolved after it. A
record found unresolved (the process died mid-send, or Meta never answered) is not sent
again blindly: the sender waits for Meta's status webhook, which carries the request id
back in `biz_opaque_callback_data`; only if none comes within `uncertain_resolve_s` of the
last attempt is the message taken as never received and sent again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID, uuid5

from pytake_contracts import (
    DeadLettered,
    DeadLetterPayload,
    Event,
    MessageFailed,
    MessageFailedPayload,
    MessageSent,
    MessageSentPayload,
    NumberSendingPaused,
    OutboundMessageRequested,
    SendingPausedPayload,
    encode_event,
)
from pytake_contracts.topics import DEAD_LETTERS, MESSAGES_DELIVERY, MESSAGES_OUTBOUND, NUMBER_ALERTS, TopicSpec
from pytake_plumbing.backoff import OUTAGE, Backoff
from pytake_plumbing.logs import get_logger
from pytake_plumbing.messaging import PermanentError

from ..adapters.db.repository import ClaimRequest, Delivery, Outcome
from ..domain.graph_message import graph_body
from ..domain.meta_errors import SPAM_LIMITED, AmbiguousSend, ErrorKind, MetaApiError
from .throughput import NumberPaused, Permit

PRODUCER = "sender"
# Outcome events get ids derived from the request: announcing an outcome again (after a
# crash, or a redelivered request) publishes the same event, which readers deduplicate.
OUTCOME_IDS = UUID("6f1c2a4e-5b7d-4c19-9a51-0d3e8f2b7c60")
log = get_logger(__name__)


class GraphApi(Protocol):
    async def send(self, phone_number_id: str, access_token: str, body: dict[str, Any]) -> str: ...


class Credentials(Protocol):
    async def access_token(self, organization_id: UUID, phone_number_id: str) -> str | None: ...
    def forget(self, organization_id: UUID, phone_number_id: str) -> None: ...


class Deliveries(Protocol):
    async def claim(self, request: ClaimRequest) -> Delivery: ...
    async def record(self, outcome: Outcome) -> bool: ...
    async def get(self, organization_id: UUID, request_id: UUID) -> Delivery | None: ...
    async def take_over(self, organization_id: UUID, request_id: UUID, expected_token: UUID | None) -> UUID | None: ...
    async def begin_attempt(self, organization_id: UUID, request_id: UUID, claim_token: UUID, attempt: int) -> bool: ...


class Gate(Protocol):
    async def acquire(self) -> Permit: ...
    def release(self, permit: Permit, *, used: bool = True) -> None: ...
    def pause(self, paused_for_s: float, reason: str | None) -> None: ...


class Gates(Protocol):
    def gate(self, organization_id: UUID, phone_number_id: str) -> Gate: ...


class Pairs(Protocol):
    def delay(self, organization_id: UUID, phone_number_id: str, contact_key: str) -> float: ...


class NumberPauses(Protocol):
    async def pause(self, organization_id: UUID, phone_number_id: str, pause_s: float, reason: str) -> Any: ...


class Publisher(Protocol):
    async def publish(self, spec: TopicSpec, event: Event, key: str) -> None: ...


@dataclass(frozen=True)
class SendPolicy:
    max_attempts: int = 5
    # Transient failures (Meta down, throttled, no answer) are retried for at least this long,
    # whatever the attempts: an outage of a few minutes delays replies, it loses none.
    retry_window_s: float = 300.0
    # Full jitter, as Meta asks of throttled senders.
    backoff: Backoff = Backoff(base_s=0.5, max_s=30.0)
    uncertain_resolve_s: float = 120.0
    spam_pause_s: float = 3600.0
    poll_s: float = 0.5


class _Resolved(Exception):
    """The request's outcome is known (sent or failed); nothing more to send."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery


class _Superseded(Exception):
    """Another replica took the request over; it will finish it."""


@dataclass
class _Job:
    event: OutboundMessageRequested
    organization_id: UUID
    token: UUID | None
    attempts: int
    started: float

    @property
    def request_id(self) -> UUID:
        return self.event.event_id

    @property
    def phone_number_id(self) -> str:
        return self.event.payload.phone_number_id

    @property
    def key(self) -> str:
        return f"{self.organization_id}:{self.event.payload.to.key}"


class Sender:
    def __init__(self, graph: GraphApi, credentials: Credentials, deliveries: Deliveries, gates: Gates,
                 pairs: Pairs, pauses: NumberPauses, publisher: Publisher, policy: SendPolicy,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._graph = graph
        self._credentials = credentials
        self._deliveries = deliveries
        self._gates = gates
        self._pairs = pairs
        self._pauses = pauses
        self._publisher = publisher
        self._policy = policy
        self._sleep = sleep
        self._clock = clock

    async def handle(self, event: OutboundMessageRequested) -> str:
        """Returns what happened: sent, failed, duplicate or superseded."""
        org = event.organization_id
        if org is None:
            raise PermanentError("an outbound request needs its organization")
        payload = event.payload
        delivery = await self._deliveries.claim(ClaimRequest(
            organization_id=org, request_id=event.event_id, phone_number_id=payload.phone_number_id,
            contact_key=payload.to.key, recipient=payload.to.model_dump_json(exclude_none=True),
            conversation_id=payload.conversation_id))
        if delivery.status == "foreign":
            raise PermanentError("the request id is already used by another organization")
        if delivery.status in ("sent", "failed"):
            log.info("outbound_duplicate", request_id=str(event.event_id), status=delivery.status)
            await self._announce(event, delivery)
            return "duplicate"
        job = _Job(event, org, delivery.claim_token, delivery.attempts, self._clock())
        try:
            if delivery.status != "new":
                # Claimed before (a crash, or a rebalance): it may be at Meta already. Its status
                # webhook may still sit unread behind the same crash, so the full wait starts now.
                job.token = await self._resolve(job)
            return await self._send(job)
        except _Resolved as resolved:
            await self._announce(event, resolved.delivery)
            return resolved.delivery.status
        except _Superseded:
            log.warning("outbound_superseded", request_id=str(event.event_id))
            return "superseded"

    async def _send(self, job: _Job) -> str:
        payload = job.event.payload
        token = await self._credentials.access_token(job.organization_id, job.phone_number_id)
        if token is None:
            return await self._fail(job, MetaApiError(0, None, "number unknown or inactive in the tenant registry"))
        body = graph_body(payload.message, payload.to, job.request_id)
        gate = self._gates.gate(job.organization_id, job.phone_number_id)
        while True:
            wait_s = self._pairs.delay(job.organization_id, job.phone_number_id, payload.to.key)
            if wait_s > 0:
                await self._sleep(wait_s)
            try:
                permit = await gate.acquire()
            except NumberPaused as paused:
                return await self._fail(job, MetaApiError(0, SPAM_LIMITED, f"not sent: {paused}"))
            try:
                await self._begin_attempt(job)
                wamid = await self._graph.send(job.phone_number_id, token, body)
            except MetaApiError as error:
                gate.release(permit)
                if error.kind is ErrorKind.RETRY and self._may_retry(job):
                    log.warning("graph_api_retry", code=error.code, http_status=error.http_status,
                                attempt=job.attempts)
                    await self._sleep(self._policy.backoff.delay(job.attempts))
                    continue
                return await self._handle_error(job, error)
            except AmbiguousSend as unknown:
                gate.release(permit)
                log.warning("graph_api_no_answer", error=str(unknown), attempt=job.attempts)
                await self._store(job, Outcome(job.organization_id, job.request_id, job.token,  # type: ignore[arg-type]
                                               "uncertain", job.attempts))
                job.token = await self._resolve(job)
                if not self._may_retry(job):
                    return await self._fail(job, MetaApiError(0, None, f"no answer from Meta: {unknown}"))
                continue
            except BaseException:
                gate.release(permit, used=True)
                raise
            gate.release(permit)
            await self._store(job, Outcome(job.organization_id, job.request_id, job.token,  # type: ignore[arg-type]
                                           "sent", job.attempts, wamid=wamid))
            await self._publish_sent(job.event, wamid)
            return "sent"

    def _may_retry(self, job: _Job) -> bool:
        return (job.attempts < self._policy.max_attempts
                or self._clock() - job.started < self._policy.retry_window_s)

    async def _handle_error(self, job: _Job, error: MetaApiError) -> str:
        if error.code == 190:
            self._credentials.forget(job.organization_id, job.phone_number_id)
        if error.kind is ErrorKind.SPAM_LIMITED:
            await self._pause_number(job, error)
        result = await self._fail(job, error)
        if error.kind is ErrorKind.INVALID:
            await self._dead_letter(job, error)
        return result

    async def _begin_attempt(self, job: _Job) -> None:
        """Record that an attempt goes out now (and that this replica still owns the request):
        it restarts the clock another replica waits on before it takes the request as lost."""
        assert job.token is not None
        if not await self._deliveries.begin_attempt(job.organization_id, job.request_id, job.token,
                                                    job.attempts + 1):
            await self._raise_if_resolved(job)
            raise _Superseded()
        job.attempts += 1

    async def _resolve(self, job: _Job) -> UUID:
        """Wait for a status webhook to show whether an unresolved send reached Meta; returns
        the token to send it again with when it did not (raises _Resolved when it did)."""
        deadline = self._clock() + self._policy.uncertain_resolve_s
        token = job.token
        while True:
            current = await self._deliveries.get(job.organization_id, job.request_id)
            assert current is not None
            if current.status in ("sent", "failed"):
                raise _Resolved(current)
            if current.claim_token != token:  # another replica is on it: give it the same time
                token = current.claim_token
                deadline = self._clock() + self._policy.uncertain_resolve_s
            if current.status == "sending" and current.attempts == 0:
                deadline = self._clock()  # claimed, but no attempt ever went out
            left = deadline - self._clock()
            if left <= 0:
                taken = await self._deliveries.take_over(job.organization_id, job.request_id, token)
                if taken is not None:
                    log.warning("outbound_unresolved_resending", request_id=str(job.request_id),
                                attempts=current.attempts)
                    return taken
                continue
            await self._sleep(min(self._policy.poll_s, left))

    async def _store(self, job: _Job, outcome: Outcome) -> None:
        """Record an outcome; the database being away is waited out (the outcome is only in memory)."""
        attempt = 0
        while True:
            try:
                stored = await self._deliveries.record(outcome)
                break
            except (OSError, ConnectionError) as exc:
                attempt += 1
                log.warning("outcome_not_stored_yet", error=repr(exc)[:300], attempt=attempt)
                await self._sleep(OUTAGE.delay(attempt))
        if not stored:
            await self._raise_if_resolved(job)
            raise _Superseded()

    async def _raise_if_resolved(self, job: _Job) -> None:
        current = await self._deliveries.get(job.organization_id, job.request_id)
        if current is not None and current.status in ("sent", "failed"):
            raise _Resolved(current)

    async def _fail(self, job: _Job, error: MetaApiError) -> str:
        log.error("outbound_failed", code=error.code, http_status=error.http_status, attempts=job.attempts)
        await self._store(job, Outcome(job.organization_id, job.request_id, job.token,  # type: ignore[arg-type]
                                       "failed", job.attempts, error_code=error.code,
                                       error_message=error.message[:2000]))
        await self._publish_failed(job.event, error.code, error.http_status or None, error.message, job.attempts)
        return "failed"

    async def _announce(self, event: OutboundMessageRequested, delivery: Delivery) -> None:
        if delivery.status == "sent":
            assert delivery.wamid is not None
            await self._publish_sent(event, delivery.wamid)
        else:
            await self._publish_failed(event, delivery.error_code, None, delivery.error_message or "failed",
                                       delivery.attempts)

    async def _publish_sent(self, event: OutboundMessageRequested, wamid: str) -> None:
        payload = event.payload
        sent = event.caused(MessageSent, producer=PRODUCER, event_id=uuid5(OUTCOME_IDS, f"{event.event_id}:sent"),
                            payload=MessageSentPayload(request_id=event.event_id,
                                                       phone_number_id=payload.phone_number_id, to=payload.to,
                                                       wamid=wamid, conversation_id=payload.conversation_id))
        await self._publisher.publish(MESSAGES_DELIVERY, sent, _key(event))

    async def _publish_failed(self, event: OutboundMessageRequested, code: int | None, http_status: int | None,
                              message: str, attempts: int) -> None:
        payload = event.payload
        failed = event.caused(
            MessageFailed, producer=PRODUCER, event_id=uuid5(OUTCOME_IDS, f"{event.event_id}:failed"),
            payload=MessageFailedPayload(request_id=event.event_id, phone_number_id=payload.phone_number_id,
                                         to=payload.to, error_code=code, http_status=http_status,
                                         error_message=message, attempts=attempts))
        await self._publisher.publish(MESSAGES_DELIVERY, failed, _key(event))

    async def _pause_number(self, job: _Job, error: MetaApiError) -> None:
        until = await self._pauses.pause(job.organization_id, job.phone_number_id, self._policy.spam_pause_s,
                                         f"Meta error {error.code}: {error.message}"[:500])
        self._gates.gate(job.organization_id, job.phone_number_id).pause(self._policy.spam_pause_s, str(error))
        log.error("number_sending_paused", phone_number_id=job.phone_number_id, paused_until=str(until))
        alert = job.event.caused(NumberSendingPaused, producer=PRODUCER, payload=SendingPausedPayload(
            phone_number_id=job.phone_number_id, error_code=error.code, error_message=error.message,
            paused_until=until))
        await self._publisher.publish(NUMBER_ALERTS, alert, f"{job.organization_id}:{job.phone_number_id}")

    async def _dead_letter(self, job: _Job, error: MetaApiError) -> None:
        letter = job.event.caused(DeadLettered, producer=PRODUCER, payload=DeadLetterPayload(
            origin_topic=MESSAGES_OUTBOUND.name, consumer=PRODUCER, error=f"rejected by Meta: {error}"[:2000],
            attempts=job.attempts, key=job.key, original=encode_event(job.event).decode()))
        await self._publisher.publish(DEAD_LETTERS, letter, MESSAGES_OUTBOUND.name)


def _key(event: OutboundMessageRequested) -> str:
    return f"{event.organization_id}:{event.payload.to.key}"
