"""Use cases on conversations: inbound messages, delays, handoffs, delivery failures.

Every change goes through one path: lock the conversation, run the flow, write the new
state and the events to send (transactional outbox) in one transaction. An inbound
message's receipt (the inbox) is written in that same transaction, so a redelivered
message finds its receipt and changes nothing; the relay publishes after commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from pytake_contracts import (
    ContactRef,
    ConversationAdvanced,
    ConversationEnded,
    ConversationErrorPayload,
    ConversationFailed,
    ConversationHandedOff,
    ConversationPayload,
    ConversationStarted,
    Event,
    InboundMessageRouted,
    MessageFailed,
    OutboundMessage,
    OutboundMessageRequested,
    OutboundRequestPayload,
    OutboundTemplate,
)
from pytake_contracts.topics import CONVERSATION_EVENTS, MESSAGES_OUTBOUND, TopicSpec
from pytake_plumbing.logs import get_logger
from pytake_plumbing.messaging import PermanentError

from ..adapters.db.repository import ConversationKey
from ..adapters.db.tables import Conversation
from ..adapters.db.unit_of_work import SqlUnitOfWork
from ..domain.executor import (
    ConversationState,
    FlowLoopError,
    FlowRuntimeError,
    HttpAnswer,
    HttpCall,
    Inbound,
    LoadedFlow,
    Step,
    advance,
    begin,
    resume,
    template_message,
)
from ..domain.expressions import ExpressionError
from ..domain.flow import BUILTIN_VARIABLES, CUSTOMER_SERVICE_WINDOW_HOURS
from .flow_cache import FlowCache

PRODUCER = "flow-engine"
WINDOW_CLOSED = 131047
log = get_logger(__name__)

Clock = Callable[[], datetime]
HttpCaller = Callable[[HttpCall], Awaitable[HttpAnswer]]


class ConversationNotFound(LookupError):
    pass


class ConversationConflict(RuntimeError):
    """The conversation is not in a state that allows the operation."""


@dataclass(frozen=True)
class EngineLimits:
    max_iterations: int = 100
    execution_timeout_s: float = 30.0
    session_ttl_hours: int = 24


class TxRuntime:
    """The executor's I/O inside one transaction: HTTP calls, and loading a jump's target flow."""

    def __init__(self, tx: SqlUnitOfWork, organization_id: UUID, flows: FlowCache, http: HttpCaller) -> None:
        self._tx = tx
        self._organization_id = organization_id
        self._flows = flows
        self._http = http

    async def http(self, call: HttpCall) -> HttpAnswer:
        return await self._http(call)

    async def load_flow(self, flow_id: UUID) -> LoadedFlow | None:
        return await self._flows.latest(self._tx, self._organization_id, flow_id)


def _builtins(contact: dict[str, Any], last_message: str | None) -> dict[str, Any]:
    """Values every flow may use; given to each run, never stored with the conversation."""
    return {"contact_name": contact.get("profile_name") or "",
            "contact_id": contact.get("wa_id") or contact.get("user_id") or "",
            "last_message": last_message or ""}


def _state(row: Conversation, last_message: str | None = None) -> ConversationState:
    return ConversationState(row.node_id, {**_builtins(row.contact, last_message), **row.variables},  # type: ignore[arg-type]
                             row.status, row.retries, row.wake_at)


def _stored(variables: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in variables.items() if name not in BUILTIN_VARIABLES}


class ConversationEngine:
    def __init__(self, uow_factory: Callable[[], SqlUnitOfWork], clock: Clock,
                 topic_of: Callable[[TopicSpec], str], http: HttpCaller, flows: FlowCache | None = None,
                 limits: EngineLimits | None = None) -> None:
        self._uow_factory = uow_factory
        self._clock = clock
        self._topic_of = topic_of
        self.http = http
        self.flows = flows or FlowCache()
        self.limits = limits or EngineLimits()

    # --- the shared path ---------------------------------------------------------

    async def execute(self, run: Awaitable[Step]) -> tuple[Step | None, str | None]:
        """Run the executor within the execution timeout; a flow error parks the conversation."""
        try:
            async with asyncio.timeout(self.limits.execution_timeout_s):
                return await run, None
        except FlowLoopError as exc:
            return None, str(exc)
        except (FlowRuntimeError, ExpressionError, KeyError) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        except TimeoutError:
            return None, f"flow execution took longer than {self.limits.execution_timeout_s:g}s"

    def _window_open(self, row: Conversation, now: datetime) -> bool:
        return now - row.last_inbound_at < timedelta(hours=CUSTOMER_SERVICE_WINDOW_HOURS)

    def _outgoing(self, row: Conversation, flow: LoadedFlow, messages: list[OutboundMessage],
                  now: datetime) -> list[OutboundMessage]:
        """Outside the 24-hour window only templates are delivered: free-form ones become the fallback."""
        if self._window_open(row, now) or all(isinstance(m, OutboundTemplate) for m in messages):
            return messages
        fallback = flow.definition.fallback_template
        kept: list[OutboundMessage] = [m for m in messages if isinstance(m, OutboundTemplate)]
        if fallback is None:
            log.warning("window_closed_no_fallback", conversation_id=str(row.id), dropped=len(messages) - len(kept))
            return kept
        log.info("window_closed_fallback_template", conversation_id=str(row.id), template=fallback.name)
        return [template_message(fallback, {**_builtins(row.contact, None), **row.variables}), *kept]

    def _events(self, cause: Event | None, row: Conversation, flow: LoadedFlow, messages: list[OutboundMessage],
                lifecycle: type[Event], error: str | None, seed: str, correlation_id: str,
                visited: list[str] | None = None) -> list[dict[str, Any]]:
        """Outbox rows for the replies and the lifecycle event; ids derive from `seed`, so a re-run repeats them."""
        org = row.organization_id
        key = f"{org}:{row.contact_key}"
        to = ContactRef.model_validate(row.contact)
        common: dict[str, Any] = {"producer": PRODUCER, "organization_id": org}
        if cause is not None:
            common.update(correlation_id=cause.correlation_id, causation_id=str(cause.event_id),
                          traceparent=cause.traceparent, tracestate=cause.tracestate)
        else:
            common.update(correlation_id=correlation_id)
        rows: list[dict[str, Any]] = []
        outbound_topic = self._topic_of(MESSAGES_OUTBOUND)
        for index, message in enumerate(messages):
            request = OutboundMessageRequested(
                event_id=uuid5(NAMESPACE_URL, f"pytake:reply:{org}:{seed}:{index}"),
                payload=OutboundRequestPayload(phone_number_id=row.phone_number_id, to=to, conversation_id=row.id,
                                               message=message),
                **common)
            rows.append(self._outbox_row(request, outbound_topic, key))
        payload_fields = {"conversation_id": row.id, "flow_id": row.flow_id, "flow_version": flow.version,
                          "contact_key": row.contact_key, "node_id": row.node_id, "status": row.status,
                          # The nodes this step ran, in order: the audit's flow funnel counts them.
                          "visited": list(visited or [])}
        payload = (ConversationErrorPayload(error=error or "", **payload_fields) if lifecycle is ConversationFailed
                   else ConversationPayload(**payload_fields))
        change = lifecycle(event_id=uuid5(NAMESPACE_URL, f"pytake:conversation:{org}:{seed}"), payload=payload,
                           **common)
        rows.append(self._outbox_row(change, self._topic_of(CONVERSATION_EVENTS), key))
        return rows

    @staticmethod
    def _outbox_row(event: Event, topic: str, key: str) -> dict[str, Any]:
        return {"id": event.event_id, "organization_id": event.organization_id, "topic": topic, "key": key,
                "event": event.model_dump(mode="json")}

    def _apply(self, row: Conversation, flow: LoadedFlow, step: Step | None, error: str | None, now: datetime,
               *, fresh: bool, cause: Event | None, seed: str, correlation_id: str = "") -> list[dict[str, Any]]:
        """Write the step's outcome into the row; returns the outbox rows to insert with it."""
        if step is None:
            row.status = "failed"
            row.error = (error or "failed")[:500]
            row.wake_at = None
            log.error("conversation_parked", conversation_id=str(row.id), error=row.error)
            messages: list[OutboundMessage] = []
            lifecycle: type[Event] = ConversationFailed
        else:
            flow = step.flow
            row.active_flow_id = flow.flow_id if flow.flow_id != row.flow_id else None
            row.flow_version = flow.version
            row.node_id = step.state.node_id
            row.status = step.state.status
            row.retries = step.state.retries
            row.variables = _stored(step.state.variables)
            row.wake_at = step.state.wake_at if step.state.status == "sleeping" else None
            row.error = None
            messages = self._outgoing(row, flow, step.messages, now)
            if step.handed_off:
                lifecycle = ConversationHandedOff
            elif row.status == "ended":
                lifecycle = ConversationEnded
            elif fresh:
                lifecycle = ConversationStarted
            else:
                lifecycle = ConversationAdvanced
        row.updated_at = now
        return self._events(cause, row, flow, messages, lifecycle, error, seed, correlation_id,
                            visited=step.visited if step is not None else None)

    async def _loaded(self, tx: SqlUnitOfWork, row: Conversation) -> LoadedFlow:
        loaded = await self.flows.version(tx, row.organization_id, row.active_flow_id or row.flow_id,
                                          row.flow_version)
        if loaded is None:
            raise PermanentError(f"conversation {row.id} is on a flow version that does not exist")
        return loaded

    # --- inbound messages ----------------------------------------------------------

    async def handle_inbound(self, event: InboundMessageRouted) -> bool:
        """Returns False when the message was a redelivery and nothing changed."""
        return await self.handle_inbound_batch([event]) == 1

    async def handle_inbound_batch(self, events: Sequence[InboundMessageRouted]) -> int:
        """Apply a batch of inbound messages in one transaction, in order; returns how many were new."""
        for event in events:
            if event.payload.route.flow_id is None:
                raise PermanentError("routed message without a flow")
        now = self._clock()
        async with self._uow_factory() as tx:
            new = await tx.conversations.record_receipts(
                (e.payload.route.organization_id, e.payload.message.wamid) for e in events)
            todo: list[InboundMessageRouted] = []
            for event in events:
                receipt = (event.payload.route.organization_id, event.payload.message.wamid)
                if receipt in new:
                    new.discard(receipt)  # the same wamid twice in one batch counts once
                    todo.append(event)
                else:
                    log.info("inbound_duplicate_skipped", wamid=event.payload.message.wamid)
            if not todo:
                return 0
            rows = await tx.conversations.lock_many(self._key(event) for event in todo)
            outbox: list[dict[str, Any]] = []
            for event in todo:
                outbox.extend(await self._inbound(tx, event, rows, now))
            await tx.session.flush()
            await tx.outbox.add_many(outbox)
            await tx.commit()
        return len(todo)

    @staticmethod
    def _key(event: InboundMessageRouted) -> ConversationKey:
        route = event.payload.route
        assert route.flow_id is not None
        return (route.organization_id, event.payload.contact.key, route.flow_id)

    async def _inbound(self, tx: SqlUnitOfWork, event: InboundMessageRouted,
                       rows: dict[ConversationKey, Conversation], now: datetime) -> list[dict[str, Any]]:
        payload = event.payload
        key = self._key(event)
        org, contact_key, flow_id = key
        row = rows.get(key)
        text = payload.message.text
        sent_at = datetime.fromtimestamp(payload.message.timestamp, UTC) if payload.message.timestamp > 0 else now
        sent_at = min(sent_at, now)
        loaded: LoadedFlow | None = None
        fresh = row is None or row.status == "ended" or (row.status != "handoff" and row.expires_at <= now)
        if not fresh:
            assert row is not None
            loaded = await self._loaded(tx, row)
            restart = text is not None and text.strip().casefold() in loaded.definition.restart_keywords
            fresh = restart and row.status != "handoff"  # a person has the conversation: the bot stays out
        if fresh:
            loaded = await self.flows.latest(tx, org, flow_id)
            if loaded is None:
                raise PermanentError(f"flow {flow_id} has no published version for organization {org}")
        assert loaded is not None
        if row is None:
            row = Conversation(id=uuid4(), organization_id=org, contact_key=contact_key, flow_id=flow_id,
                               retries=0, variables={}, status="active", node_id=loaded.definition.start.id,
                               flow_version=loaded.version, last_inbound_at=sent_at, created_at=now)
            tx.conversations.add(row)
            rows[key] = row
        row.phone_number_id = payload.phone_number_id
        row.contact = payload.contact.model_dump(mode="json")
        row.last_inbound_at = max(row.last_inbound_at, sent_at)
        row.expires_at = now + timedelta(hours=self._ttl_hours(loaded))
        if fresh:
            row.active_flow_id = None
            state = begin(loaded.definition, _builtins(row.contact, text))
        else:
            state = _state(row, text)
        inbound = Inbound(text=text, reply_id=payload.message.reply_id)
        runtime = TxRuntime(tx, org, self.flows, self.http)
        step, error = await self.execute(advance(loaded, state, inbound, now, runtime, self.limits.max_iterations))
        return self._apply(row, loaded, step, error, now, fresh=fresh, cause=event, seed=payload.message.wamid)

    def _ttl_hours(self, loaded: LoadedFlow) -> int:
        settings = loaded.definition.settings
        return settings.session_ttl_hours if settings and settings.session_ttl_hours else self.limits.session_ttl_hours

    # --- delays --------------------------------------------------------------------

    async def wake_due(self, limit: int = 100) -> int:
        """Resume sleeping conversations whose delay is over; returns how many were resumed."""
        now = self._clock()
        async with self._uow_factory() as tx:
            rows = await tx.conversations.lock_due(now, limit)
            outbox: list[dict[str, Any]] = []
            for row in rows:
                loaded = await self._loaded(tx, row)
                seed = f"wake:{row.id}:{row.wake_at.isoformat() if row.wake_at else ''}"
                runtime = TxRuntime(tx, row.organization_id, self.flows, self.http)
                step, error = await self.execute(resume(loaded, _state(row), now, runtime,
                                                         self.limits.max_iterations))
                outbox.extend(self._apply(row, loaded, step, error, now, fresh=False, cause=None, seed=seed,
                                          correlation_id=f"wake-{row.id}"))
            await tx.session.flush()
            await tx.outbox.add_many(outbox)
            await tx.commit()
        return len(rows)

    # --- people: end a conversation, release a handoff ----------------------------------

    async def release(self, organization_id: UUID, conversation_id: UUID) -> Conversation:
        now = self._clock()
        async with self._uow_factory() as tx:
            row = await tx.conversations.by_id(organization_id, conversation_id, lock=True)
            if row is None:
                raise ConversationNotFound(conversation_id)
            if row.status != "handoff":
                raise ConversationConflict(f"the conversation is {row.status}, not handed off")
            loaded = await self._loaded(tx, row)
            runtime = TxRuntime(tx, organization_id, self.flows, self.http)
            step, error = await self.execute(resume(loaded, _state(row), now, runtime, self.limits.max_iterations))
            outbox = self._apply(row, loaded, step, error, now, fresh=False, cause=None,
                                 seed=f"release:{row.id}:{uuid4()}", correlation_id=f"release-{row.id}")
            await tx.session.flush()
            await tx.outbox.add_many(outbox)
            await tx.commit()
            return row

    async def end(self, organization_id: UUID, conversation_id: UUID) -> Conversation:
        now = self._clock()
        async with self._uow_factory() as tx:
            row = await tx.conversations.by_id(organization_id, conversation_id, lock=True)
            if row is None:
                raise ConversationNotFound(conversation_id)
            if row.status == "ended":
                raise ConversationConflict("the conversation has already ended")
            loaded = await self._loaded(tx, row)
            row.status = "ended"
            row.wake_at = None
            row.updated_at = now
            outbox = self._events(None, row, loaded, [], ConversationEnded, None, f"end:{row.id}:{uuid4()}",
                                  f"end-{row.id}")
            await tx.session.flush()
            await tx.outbox.add_many(outbox)
            await tx.commit()
            return row

    async def get(self, organization_id: UUID, conversation_id: UUID) -> Conversation:
        async with self._uow_factory() as tx:
            row = await tx.conversations.by_id(organization_id, conversation_id)
            if row is None:
                raise ConversationNotFound(conversation_id)
            return row

    async def search(self, organization_id: UUID, *, status: str | None = None, flow_id: UUID | None = None,
                     contact_key: str | None = None, limit: int = 50, offset: int = 0) -> list[Conversation]:
        async with self._uow_factory() as tx:
            return await tx.conversations.search(organization_id, status=status, flow_id=flow_id,
                                                 contact_key=contact_key, limit=limit, offset=offset)

    # --- delivery failures ----------------------------------------------------------------

    async def handle_delivery_failure(self, event: MessageFailed) -> bool:
        """Meta refused a free-form message because the 24 h window is closed: send the fallback template.

        At most one fallback per inbound message (the failures of its replies share a correlation id).
        Returns True when a fallback was queued.
        """
        payload = event.payload
        org = event.organization_id
        if payload.error_code != WINDOW_CLOSED or org is None:
            return False
        async with self._uow_factory() as tx:
            request = await tx.outbox.request(org, payload.request_id)
            if request is None or request.event.get("event_type") != OutboundMessageRequested.model_fields[
                    "event_type"].default:
                return False  # not a request of ours
            if request.event["payload"]["message"]["type"] == "template":
                return False  # a failed template is not answered with another one
            if not await tx.conversations.record_receipt(org, f"fallback:{request.event['correlation_id']}"):
                return False
            conversation_id = request.event["payload"].get("conversation_id")
            row = await tx.conversations.by_id(org, UUID(conversation_id), lock=True) if conversation_id else None
            if row is None:
                await tx.commit()
                return False
            loaded = await self._loaded(tx, row)
            fallback = loaded.definition.fallback_template
            if fallback is None:
                log.warning("window_closed_no_fallback", conversation_id=str(row.id))
                await tx.commit()
                return False
            message = template_message(fallback, _state(row).variables)
            request_event = event.caused(
                OutboundMessageRequested, producer=PRODUCER,
                event_id=uuid5(NAMESPACE_URL, f"pytake:fallback:{org}:{request.event['correlation_id']}"),
                payload=OutboundRequestPayload(phone_number_id=row.phone_number_id,
                                               to=ContactRef.model_validate(row.contact), conversation_id=row.id,
                                               message=message))
            await tx.outbox.add_many([self._outbox_row(request_event, self._topic_of(MESSAGES_OUTBOUND),
                                                       f"{org}:{row.contact_key}")])
            await tx.commit()
            log.info("window_closed_fallback_queued", conversation_id=str(row.id), template=fallback.name)
            return True
