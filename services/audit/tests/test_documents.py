from __future__ import annotations

import itertools
from datetime import timedelta
from uuid import uuid4

import pytest
from pymongo import ASCENDING

from pytake_audit.adapters.mongo_store import ttl_index
from pytake_audit.domain.documents import event_document, fold_conversations, fold_deliveries
from pytake_contracts.events import ConversationEnded, ConversationStarted

from pytake_audit.samples import T0, conversation, inbound, outbound, send_failed, sent, status

ORG = uuid4()


def test_event_document_is_keyed_by_event_id_with_query_fields() -> None:
    event = inbound(ORG, "15550001111", "Hi", T0)
    document = event_document(event, 30, T0)
    assert document["_id"] == str(event.event_id) and "event_id" not in document
    assert document["organization_id"] == str(ORG)
    assert document["direction"] == "in" and document["message_type"] == "text"
    assert document["contact_key"] == "p:15550001111" and document["wamid"] == event.payload.message.wamid
    assert document["day"] == "2026-03-02"
    assert document["expire_at"] == T0 + timedelta(days=30)


def test_conversation_events_carry_their_flow_for_the_funnel() -> None:
    cause = inbound(ORG, "15550001111", "Hi", T0)
    flow_id = uuid4()
    event = conversation(ConversationStarted, cause, uuid4(), flow_id, "ask", "waiting", ["start", "ask"])
    assert event_document(event, 30, T0)["flow_id"] == str(flow_id)


def test_outbound_request_is_searchable_by_conversation_and_type() -> None:
    conversation_id = uuid4()
    request = outbound(inbound(ORG, "15550001111", "Hi", T0), conversation_id, "Hello")
    document = event_document(request, 7, T0)
    assert document["direction"] == "out" and document["message_type"] == "text"
    assert document["conversation_id"] == str(conversation_id)


@pytest.mark.parametrize("kind", ["inbound", "conversation", "outbound", "sent", "status", "send_failed"])
def test_a_document_holds_the_whole_event(kind: str) -> None:
    hi = inbound(ORG, "15550001111", "Hi", T0)
    request = outbound(hi, uuid4(), "Hello")
    event = {"inbound": hi, "outbound": request, "sent": sent(request, "wamid.S"),
             "conversation": conversation(ConversationStarted, hi, uuid4(), uuid4(), "ask", "waiting", ["start"]),
             "status": status(ORG, "wamid.S", "failed", T0, errors=[{"code": 131026}]),
             "send_failed": send_failed(request)}[kind]
    document = event_document(event, 30, T0)
    # Analytics can read the log with the contracts: the document decodes back into the very event.
    assert type(event).model_validate({**document, "event_id": document["_id"]}) == event


def docs(*events) -> list[dict]:
    return [event_document(e, 30, T0) for e in events]


@pytest.mark.parametrize("order", list(itertools.permutations(range(5))))
def test_delivery_status_is_the_same_whatever_order_and_duplicates_arrive_in(order) -> None:
    request = outbound(inbound(ORG, "15550001111", "Hi", T0), uuid4(), "Hello")
    message_sent = sent(request, "wamid.A")  # the sender's event comes before Meta's "sent" webhook
    arrivals = docs(message_sent, status(ORG, "wamid.A", "sent", T0 + timedelta(seconds=1)),
                    status(ORG, "wamid.A", "read", T0 + timedelta(seconds=3)),
                    status(ORG, "wamid.A", "delivered", T0 + timedelta(seconds=2)),
                    status(ORG, "wamid.A", "read", T0 + timedelta(seconds=3)))
    delivery = fold_deliveries([arrivals[i] for i in order])["wamid.A"]
    assert delivery.status == "read" and delivery.request_id == str(request.event_id)
    assert delivery.at == {"sent": message_sent.occurred_at, "delivered": T0 + timedelta(seconds=2),
                           "read": T0 + timedelta(seconds=3)}
    assert delivery.delivered


def test_failed_is_terminal_and_keeps_its_errors() -> None:
    arrivals = docs(status(ORG, "wamid.F", "failed", T0, errors=[{"code": 131026}]),
                    status(ORG, "wamid.F", "read", T0 + timedelta(seconds=1)))
    for order in (arrivals, arrivals[::-1]):
        delivery = fold_deliveries(order)["wamid.F"]
        assert delivery.status == "failed" and delivery.errors == [{"code": 131026}]


def test_read_implies_delivered_and_unranked_statuses_are_ignored() -> None:
    delivery = fold_deliveries(docs(status(ORG, "wamid.R", "read", T0), status(ORG, "wamid.R", "deleted", T0)))
    assert delivery["wamid.R"].delivered and delivery["wamid.R"].status == "read"
    assert set(delivery["wamid.R"].at) == {"read"}


def test_a_conversation_path_keeps_every_node_reached_and_its_newest_state() -> None:
    org, conversation_id, flow_id = uuid4(), uuid4(), uuid4()
    hi, ada = inbound(org, "1555", "Hi", T0), inbound(org, "1555", "Ada", T0 + timedelta(minutes=1))
    started = conversation(ConversationStarted, hi, conversation_id, flow_id, "ask", "waiting", ["start", "ask"])
    ended = conversation(ConversationEnded, ada, conversation_id, flow_id, "end", "ended", ["greet", "end"])
    for order in ([started, ended], [ended, started]):
        path = fold_conversations(docs(*order))[str(conversation_id)]
        assert path.reached == {"start", "ask", "greet", "end"}
        assert (path.node_id, path.status) == ("end", "ended")


def test_ttl_index_is_defined_as_mongodb_needs_it() -> None:
    document = ttl_index().document
    assert dict(document["key"]) == {"expire_at": ASCENDING}
    assert document["expireAfterSeconds"] == 0
