"""The sender's status joins on a real PostgreSQL: a batch of Meta's statuses joined in one
transaction, by callback id or by wamid, in order, within one organization, and concurrent
joiners of the same deliveries (two replicas during a rebalance) moving each forward once."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from pytake_plumbing.database import make_engine, make_session_factory
from pytake_sender.adapters.db.direct import DirectPool
from pytake_sender.adapters.db.repository import ClaimRequest, DeliveryRepository, Outcome, StatusSeen
from pytake_sender.app import MIGRATIONS

from .schemas import migrated_schema

pytestmark = pytest.mark.integration

ORG, OTHER_ORG = uuid4(), uuid4()


@pytest.fixture
async def schema(settings):
    async with migrated_schema(settings, "sender", MIGRATIONS, "joins") as name:
        yield name


@pytest.fixture
async def repository_factory(settings, schema):
    made: list[tuple[DirectPool, object]] = []

    def make() -> DeliveryRepository:
        engine = make_engine(settings.database_url, schema, pool_size=2)
        direct = DirectPool(settings.database_url, schema, size=4)
        made.append((direct, engine))
        return DeliveryRepository(make_session_factory(engine), direct)

    yield make
    for direct, engine in made:
        await direct.close()
        await engine.dispose()  # type: ignore[attr-defined]


async def sent_request(deliveries: DeliveryRepository, wamid: str | None, org=ORG):  # type: ignore[no-untyped-def]
    """A request claimed and, with a wamid, answered by Meta; without one, still unresolved."""
    request_id = uuid4()
    claimed = await deliveries.claim(ClaimRequest(org, request_id, "100", "100:15551234567",
                                                  '{"wa_id":"15551234567"}', None))
    if wamid:
        assert await deliveries.record(Outcome(org, request_id, claimed.claim_token, "sent", 1, wamid))  # type: ignore[arg-type]
    return request_id


async def test_a_batch_joins_in_order_by_callback_id_or_wamid(repository_factory) -> None:
    deliveries = repository_factory()
    answered = await sent_request(deliveries, "wamid.A")
    unresolved = await sent_request(deliveries, None)
    joins = await deliveries.join_statuses([
        StatusSeen(ORG, None, "wamid.A", "delivered"),
        StatusSeen(ORG, unresolved, "wamid.B", "sent"),
        StatusSeen(ORG, None, "wamid.A", "sent"),  # late: changes nothing
        StatusSeen(ORG, None, "wamid.A", "read"),
        StatusSeen(ORG, None, "wamid.nobody", "read"),
        StatusSeen(ORG, unresolved, "wamid.B", "read"),
    ])
    assert [(j.request_id, j.moved_forward) if j else None for j in joins] == [
        (answered, True), (unresolved, True), (answered, False), (answered, True), None, (unresolved, True)]
    assert joins[1].wamid == joins[5].wamid == "wamid.B"  # type: ignore[union-attr]

    resolved = await deliveries.get(ORG, unresolved)
    assert resolved is not None and resolved.status == "sent" and resolved.wamid == "wamid.B"
    again = await deliveries.join_statuses([StatusSeen(ORG, None, "wamid.A", "read"),
                                            StatusSeen(ORG, unresolved, "wamid.B", "delivered")])
    assert [j.moved_forward for j in again if j] == [False, False]


async def test_another_organization_s_statuses_join_nothing(repository_factory) -> None:
    deliveries = repository_factory()
    request_id = await sent_request(deliveries, "wamid.C")
    joins = await deliveries.join_statuses([StatusSeen(OTHER_ORG, None, "wamid.C", "read"),
                                            StatusSeen(OTHER_ORG, request_id, "wamid.C", "read")])
    assert joins == [None, None]
    mine = await deliveries.join_statuses([StatusSeen(ORG, request_id, "wamid.C", "read")])
    assert mine[0] is not None and mine[0].moved_forward


async def test_concurrent_joiners_move_each_delivery_forward_once(repository_factory) -> None:
    first, second = repository_factory(), repository_factory()
    requests = [await sent_request(first, f"wamid.{i}") for i in range(40)]
    # Each batch names every delivery, in opposite orders: the locks are taken in one order, so
    # neither deadlocks, and every status moves its delivery forward exactly once.
    statuses = [StatusSeen(ORG, r, f"wamid.{i}", s) for i, r in enumerate(requests) for s in ("delivered", "read")]
    results = await asyncio.gather(first.join_statuses(statuses), second.join_statuses(statuses[::-1]))
    moved = [(join.request_id, status.status)
             for batch, seen in zip(results, (statuses, statuses[::-1]), strict=True)
             for join, status in zip(batch, seen, strict=True) if join and join.moved_forward]
    assert len(moved) == len(set(moved))  # no status moved a delivery twice
    assert sorted(r for r, status in moved if status == "read") == sorted(requests)  # each ends at `read`
