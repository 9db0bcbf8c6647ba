"""The gateway's PostgreSQL dedup store on a real PostgreSQL: batched claims and confirmations."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import pytest

from pytake_gateway.adapters.db.dedup import PostgresDedupStore
from pytake_gateway.app import MIGRATIONS
from pytake_plumbing.database import asyncpg_dsn, run_migrations

pytestmark = pytest.mark.integration


@pytest.fixture
async def store_factory(settings):
    schema = f"{settings.db_schema('gateway')}_store_{secrets.token_hex(3)}"
    await asyncio.to_thread(run_migrations, MIGRATIONS, settings.database_url, schema)
    stores: list[PostgresDedupStore] = []

    async def make(lease_s: float = 30.0) -> PostgresDedupStore:
        store = PostgresDedupStore(settings.database_url, schema, lease_s=lease_s, pool_size=4)
        await store.start()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()
    connection = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
    await connection.close()


def _keys(count: int) -> list[str]:
    return [f"m:wamid.{secrets.token_hex(8)}" for _ in range(count)]


async def test_concurrent_claims_of_one_key_by_two_replicas_claim_it_once(store_factory) -> None:
    first, second = await store_factory(), await store_factory()
    key = _keys(1)[0]
    claims = await asyncio.gather(*(store.claim([key]) for _ in range(20) for store in (first, second)))
    assert sum(key in claim.claimed for claim in claims) == 1
    assert all(key in claim.in_flight for claim in claims if key not in claim.claimed)


async def test_many_concurrent_requests_share_statements_and_each_gets_its_own_answer(store_factory) -> None:
    store = await store_factory()
    published, fresh = _keys(50), _keys(200)
    assert (await store.claim(published)).claimed == set(published)
    await store.confirm(published)
    claims = await asyncio.gather(*(store.claim([key]) for key in fresh + published))
    assert [claim.claimed for claim in claims[:200]] == [{key} for key in fresh]
    # Already published: neither claimed nor in flight, i.e. a redelivery.
    assert all(not claim.claimed and not claim.in_flight for claim in claims[200:])


async def test_a_claim_is_in_flight_until_confirmed_then_a_redelivery(store_factory) -> None:
    store = await store_factory()
    key = _keys(1)[0]
    assert (await store.claim([key])).claimed == {key}
    assert (await store.claim([key])).in_flight == {key}
    await store.confirm([key])
    redelivery = await store.claim([key])
    assert not redelivery.claimed and not redelivery.in_flight


async def test_a_released_claim_can_be_claimed_again(store_factory) -> None:
    store = await store_factory()
    key = _keys(1)[0]
    await store.claim([key])
    await store.release([key])
    assert (await store.claim([key])).claimed == {key}


async def test_a_stale_claim_of_a_dead_replica_is_taken_over_but_a_published_key_never(store_factory) -> None:
    dead, alive = await store_factory(lease_s=0.2), await store_factory(lease_s=0.2)
    stale, published = _keys(2)
    await dead.claim([stale, published])
    await dead.confirm([published])
    await asyncio.sleep(0.3)  # the lease itself is what is under test: it must run out
    takeover = await alive.claim([stale, published])
    assert takeover.claimed == {stale} and not takeover.in_flight


async def test_expired_receipts_are_deleted_and_recent_ones_kept(store_factory) -> None:
    store = await store_factory()
    old, recent = _keys(30), _keys(5)
    await store.claim(old)
    await store.confirm(old)
    await asyncio.sleep(0.5)  # retention is measured against the receipts' age
    await store.claim(recent)
    assert await store.delete_expired(0.4, batch=7) == 30  # several batches
    assert (await store.claim(recent)).in_flight == set(recent)
    assert (await store.claim(old)).claimed == set(old)  # forgotten after retention
