"""Use case: one routed inbound message advances its conversation, exactly once.

The receipt, the new state and the replies to send are written in one transaction
(transactional outbox); the outbox is published after commit. A redelivered message
finds its receipt and changes nothing; a crash after commit is healed by the relay.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

from pytake_contracts import (
    ConversationAdvanced,
    ConversationEnded,
    ConversationPayload,
    ConversationStarted,
    Event,
    InboundMessageRouted,
    OutboundMessageRequested,
    OutboundRequestPayload,
    OutboundText,
)
from pytake_contracts.topics import CONVERSATION_EVENTS, MESSAGES_OUTBOUND, TopicSpec
from pytake_plumbing.logs import get_logger
from pytake_plumbing.messaging import PermanentError

from ..adapters.db.tables import Conversation, OutboxRecord
from ..adapters.db.unit_of_work import SqlUnitOfWork
from ..domain.executor import ConversationState, FlowLoopError, advance, begin
from ..domain.flow import CONVERSATION_SESSION_TTL_HOURS, FlowDefinition

PRODUCER = "flow-engine"
log = get_logger(__name__)

Clock = Callable[[], datetime]


def _outbox(spec: TopicSpec, topic: str, event: Event, key: str) -> OutboxRecord:
    assert event.organization_id is not None
    return OutboxRecord(id=event.event_id, organization_id=event.organization_id, topic=topic, key=key,
                        event=event.model_dump(mode="json"))


async def handle_inbound(
    event: InboundMessageRouted, uow: SqlUnitOfWork, clock: Clock, topic_of: Callable[[TopicSpec], str]
) -> bool:
    """Returns False when the message was a redelivery and nothing changed."""
    payload = event.payload
    org = payload.route.organization_id
    flow_id = payload.route.flow_id
    if flow_id is None:
        raise PermanentError("routed message without a flow")
    contact_key = payload.contact.key
    now = clock()
    async with uow as tx:
        if not await tx.conversations.record_receipt(org, payload.message.wamid):
            log.info("inbound_duplicate_skipped", wamid=payload.message.wamid)
            return False
        row = await tx.conversations.lock(org, contact_key, flow_id)
        fresh = row is None or row.status == "ended" or row.expires_at <= now
        if fresh:
            version = await tx.flows.latest_version(org, flow_id)
        else:
            assert row is not None
            version = await tx.flows.version(org, flow_id, row.flow_version)
        if version is None:
            raise PermanentError(f"flow {flow_id} has no published version for organization {org}")
        flow = FlowDefinition.model_validate(version.definition)
        if fresh:
            state = begin(flow)
            answer = None
        else:
            assert row is not None
            state = ConversationState(row.node_id, dict(row.variables), row.status, row.retries)  # type: ignore[arg-type]
            answer = payload.message.text
        try:
            step = advance(flow, state, answer)
        except FlowLoopError as exc:
            log.error("flow_loop_stopped", error=str(exc))
            step = None
        if row is None:
            row = Conversation(organization_id=org, contact_key=contact_key, flow_id=flow_id, retries=0)
            tx.conversations.add(row)
        row.flow_version = version.version
        row.phone_number_id = payload.phone_number_id
        row.contact = payload.contact.model_dump(mode="json")
        row.last_inbound_at = now
        row.expires_at = now + timedelta(hours=CONVERSATION_SESSION_TTL_HOURS)
        if step is None:
            row.status = "ended"
            replies: list[str] = []
        else:
            row.node_id = step.state.node_id
            row.status = step.state.status
            row.retries = step.state.retries
            row.variables = step.state.variables
            replies = step.replies
        await tx.session.flush()
        conversation_key = f"{org}:{contact_key}"
        records: list[OutboxRecord] = []
        for index, text in enumerate(replies):
            request = event.caused(
                OutboundMessageRequested,
                producer=PRODUCER,
                # Derived from the inbound message, so a re-run yields the same request ids.
                event_id=uuid5(NAMESPACE_URL, f"pytake:reply:{org}:{payload.message.wamid}:{index}"),
                payload=OutboundRequestPayload(
                    phone_number_id=payload.phone_number_id,
                    to=payload.contact,
                    conversation_id=row.id,
                    message=OutboundText(body=text),
                ),
            )
            records.append(_outbox(MESSAGES_OUTBOUND, topic_of(MESSAGES_OUTBOUND), request, conversation_key))
        lifecycle = ConversationStarted if fresh else (ConversationEnded if row.status == "ended" else ConversationAdvanced)
        if fresh and row.status == "ended":
            lifecycle = ConversationEnded
        change = event.caused(
            lifecycle,
            producer=PRODUCER,
            event_id=uuid5(NAMESPACE_URL, f"pytake:conversation:{org}:{payload.message.wamid}"),
            payload=ConversationPayload(conversation_id=row.id, flow_id=flow_id, flow_version=version.version,
                                        contact_key=contact_key, node_id=row.node_id, status=row.status),
        )
        records.append(_outbox(CONVERSATION_EVENTS, topic_of(CONVERSATION_EVENTS), change, conversation_key))
        for record in records:
            tx.outbox.add(record)
        await tx.commit()
    return True


async def conversation_state(uow: SqlUnitOfWork, organization_id: UUID, contact_key: str,
                             flow_id: UUID) -> Conversation | None:
    async with uow as tx:
        return await tx.conversations.get(organization_id, contact_key, flow_id)
