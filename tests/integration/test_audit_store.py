"""The audit's write path on the local MongoDB-compatible server: idempotent under
redelivery, statuses applied monotonically, retention."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from pytake_audit.adapters.mongo_store import AuditQueries, AuditStore, RetentionRepository
from pytake_audit.domain.documents import EVENTS
from pytake_audit.domain.views import FunnelQuery
from pytake_audit.service.queries import AuditQueryService
from pytake_audit.samples import T0, conversation, inbound, outbound, send_failed, sent, status
from pytake_audit.service.record import RetentionPolicy, record_events
from pytake_audit.service.sweeper import ExpirySweeper
from pytake_contracts.events import ConversationEnded, ConversationStarted, DeadLettered, DeadLetterPayload
from pytake_plumbing.mongo import make_mongo_client

from .waiting import eventually

pytestmark = pytest.mark.integration


class Audit:
    def __init__(self, client: Any, database: str) -> None:
        self.client = client
        self.db = client[database]
        self.store = AuditStore(client, database)
        self.retention = RetentionPolicy(RetentionRepository(client, database), default_days=30)
        self.queries = AuditQueryService(AuditQueries(client, database))

    async def record(self, events: list) -> int:
        return await record_events(events, self.store, self.retention)

    async def snapshot(self) -> list[dict]:
        return [d async for d in self.db[EVENTS].find({}).sort("_id", 1)]


@pytest.fixture
async def audit(settings) -> AsyncIterator[Audit]:
    database = f"{settings.namespace}_audit_{secrets.token_hex(3)}"
    client = make_mongo_client(settings.mongodb_url)
    audit = Audit(client, database)
    await audit.store.ensure_indexes()
    try:
        yield audit
    finally:
        await client.drop_database(database)
        await client.close()


def ms(moment: datetime) -> datetime:
    """As BSON stores it: milliseconds."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def scripted_exchange(org) -> list:
    """One contact writes twice; two replies are sent, one is refused; statuses arrive."""
    conversation_id, flow_id = uuid4(), uuid4()
    hi = inbound(org, "15550001111", "Hi", T0)
    ada = inbound(org, "15550001111", "Ada", T0 + timedelta(minutes=1))
    ask, greet = outbound(hi, conversation_id, "Name?"), outbound(ada, conversation_id, "Hi Ada")
    return [
        hi, conversation(ConversationStarted, hi, conversation_id, flow_id, "ask", "waiting", ["start", "ask"]),
        ask, sent(ask, "wamid.ask"),
        status(org, "wamid.ask", "delivered", T0 + timedelta(seconds=5)),
        ada, conversation(ConversationEnded, ada, conversation_id, flow_id, "end", "ended", ["greet", "end"]),
        greet, send_failed(greet),
    ]


async def test_a_redelivered_batch_changes_nothing(audit: Audit) -> None:
    events = scripted_exchange(uuid4())
    assert await audit.record(events) == len(events)
    before = await audit.snapshot()
    assert len(before) == len(events)

    assert await audit.record(events) == 0  # the whole batch again
    assert await audit.record(events[2:5] + events[:1]) == 0  # part of it, in another order
    assert await audit.snapshot() == before


async def test_a_batch_half_redelivered_writes_only_the_new_events(audit: Audit) -> None:
    events = scripted_exchange(uuid4())
    await audit.record(events[:4])
    assert await audit.record(events) == len(events) - 4
    assert await audit.db[EVENTS].count_documents({}) == len(events)


async def test_stored_events_scattered_through_a_batch_are_skipped_and_the_rest_written(audit: Audit) -> None:
    events = scripted_exchange(uuid4())
    await audit.record(events[1:2] + events[3:5])
    assert await audit.record(events) == len(events) - 3
    assert await audit.db[EVENTS].count_documents({}) == len(events)


@pytest.mark.parametrize("order", list(itertools.permutations(["sent", "delivered", "read", "read", "message"]))[::7])
async def test_statuses_apply_monotonically_in_any_order(audit: Audit, order: tuple[str, ...]) -> None:
    org = uuid4()
    request = outbound(inbound(org, "15550001111", "Hi", T0), uuid4(), "Hello")
    wamid = "wamid." + secrets.token_hex(6)
    times = {"sent": T0 + timedelta(seconds=1), "delivered": T0 + timedelta(seconds=2),
             "read": T0 + timedelta(seconds=3)}
    by_name = {name: status(org, wamid, name, at) for name, at in times.items()}
    for name in order:  # one event per batch: each is applied on its own
        event = sent(request, wamid) if name == "message" else by_name[name]
        await audit.record([event])
    delivery = await audit.queries.delivery(org, wamid)
    assert delivery.status == "read" and delivery.request_id == str(request.event_id)
    assert {name: at.replace(tzinfo=UTC) for name, at in delivery.at.items()} == {
        "sent": min(times["sent"], ms(sent(request, wamid).occurred_at)), "delivered": times["delivered"],
        "read": times["read"]}


async def test_failed_is_terminal(audit: Audit) -> None:
    org = uuid4()
    failed = status(org, "wamid.f", "failed", T0 + timedelta(seconds=2), errors=[{"code": 131026}])
    await audit.record([failed])
    await audit.record([status(org, "wamid.f", "read", T0 + timedelta(seconds=3)),
                        status(org, "wamid.f", "sent", T0 + timedelta(seconds=1))])
    delivery = await audit.queries.delivery(org, "wamid.f")
    assert delivery.status == "failed" and delivery.errors == [{"code": 131026}]


async def test_a_conversation_keeps_its_newest_node_when_events_come_out_of_order(audit: Audit) -> None:
    org, conversation_id, flow_id = uuid4(), uuid4(), uuid4()
    hi = inbound(org, "15550002222", "Hi", T0)
    ada = inbound(org, "15550002222", "Ada", T0 + timedelta(minutes=1))
    started = conversation(ConversationStarted, hi, conversation_id, flow_id, "ask", "waiting", ["start", "ask"])
    ended = conversation(ConversationEnded, ada, conversation_id, flow_id, "end", "ended", ["greet", "end"])
    await audit.record([ended])
    await audit.record([started])
    await audit.record([started, ended])  # redelivered together
    funnel = await audit.queries.funnel(org, FunnelQuery(flow_id=flow_id, since=T0 - timedelta(days=1),
                                                          until=T0 + timedelta(days=1)))
    assert funnel.conversations == 1
    assert {n.node_id: (n.reached, n.stopped) for n in funnel.nodes} == {
        "start": (1, 0), "ask": (1, 0), "greet": (1, 0), "end": (1, 1)}


async def test_documents_expire_at_their_organizations_retention(audit: Audit) -> None:
    org = uuid4()
    await RetentionRepository(audit.client, audit.db.name).put(str(org), 7, datetime.now(UTC))
    events = scripted_exchange(org)
    await audit.record(events)
    document = await audit.db[EVENTS].find_one({"_id": str(events[0].event_id)})
    assert document["expire_at"].replace(tzinfo=UTC) == ms(events[0].occurred_at) + timedelta(days=7)
    other = inbound(uuid4(), "15550003333", "Hi", T0)
    await audit.record([other])
    default = await audit.db[EVENTS].find_one({"_id": str(other.event_id)})
    assert default["expire_at"] - default["occurred_at"] == timedelta(days=30)


async def test_expiry_index_on_this_server(audit: Audit) -> None:
    """MongoDB gets the TTL index; a server without TTL (FerretDB) gets a plain index and the sweeper."""
    indexes = await audit.db[EVENTS].index_information()
    if audit.store.ttl_supported:
        assert indexes["expire_at_ttl"]["expireAfterSeconds"] == 0
        assert indexes["expire_at_ttl"]["key"] == [("expire_at", 1)]
    else:
        assert "expire_at_ttl" not in indexes and indexes["expire_at"]["key"] == [("expire_at", 1)]


async def test_a_restarted_audit_finds_its_indexes_and_keeps_writing(audit: Audit) -> None:
    """A second start against the same database (every restart) keeps the indexes as they are."""
    before = await audit.db[EVENTS].index_information()
    restarted = AuditStore(audit.client, audit.db.name)
    await restarted.ensure_indexes()
    await restarted.ensure_indexes()
    assert await audit.db[EVENTS].index_information() == before
    assert restarted.ttl_supported == audit.store.ttl_supported
    assert await audit.record(scripted_exchange(uuid4())) > 0


async def test_the_sweeper_deletes_expired_documents_only(audit: Audit) -> None:
    now = datetime.now(UTC)
    old, fresh = inbound(uuid4(), "1555", "old", now - timedelta(days=40)), inbound(uuid4(), "1555", "new", now)
    await audit.record([old, fresh])
    deleted = await ExpirySweeper(audit.store, 3600).sweep_once(now)
    assert deleted[EVENTS] == 1
    assert [d["_id"] async for d in audit.db[EVENTS].find({})] == [str(fresh.event_id)]


async def test_mongodb_ttl_monitor_deletes_expired_documents(audit: Audit) -> None:
    if not audit.store.ttl_supported:
        pytest.skip("this server does not implement TTL indexes (FerretDB): expiry is shown by the sweeper test, "
                    "the TTL index definition by test_expiry_index_on_this_server and the unit test")
    now = datetime.now(UTC)
    expired = inbound(uuid4(), "1555", "old", now - timedelta(days=40))
    await audit.record([expired])
    # MongoDB's TTL monitor runs every 60 s.
    await eventually(lambda: audit.db[EVENTS].count_documents({"_id": str(expired.event_id)}),
                     lambda n: n == 0, timeout_s=180, interval_s=2)


async def test_a_dead_letter_holding_a_nul_is_recorded_with_a_stand_in(audit: Audit) -> None:
    # PostgreSQL-backed servers cannot store U+0000; the letter is kept, the NUL shown as ␀.
    org = uuid4()
    letter = DeadLettered(organization_id=org, correlation_id="c", producer="router", payload=DeadLetterPayload(
        origin_topic="pytake.webhook.inbound", consumer="router", error="undecodable", attempts=1,
        original="\x00not an event\ufffd"))
    assert await audit.record([letter, inbound(org, "15550001111", "Hi", T0)]) == 2
    stored = await audit.db[EVENTS].find_one({"_id": str(letter.event_id), "organization_id": str(org)})
    assert stored is not None and stored["payload"]["original"] in ("\x00not an event\ufffd",
                                                                    "\u2400not an event\ufffd")
