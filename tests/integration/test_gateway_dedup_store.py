"""The forwarder's receipt store on a real PostgreSQL: first-seen keys, rollback, concurrent recorders,
expiry, outage."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from pytake_devstack.stack import free_port
from pytake_gateway.adapters.db.receipts import PostgresReceiptStore
from pytake_gateway.app import MIGRATIONS
from pytake_gateway.service.forward import ReceiptsUnavailable
from pytake_plumbing.database import asyncpg_dsn

from .schemas import migrated_schema
from .waiting import eventually

pytestmark = pytest.mark.integration


class Oops(Exception):
    """The forward failed after the keys were recorded (Kafka refused, the process is stopping, ...)."""


@pytest.fixture
async def schema(settings):
    """The gateway's schema, migrated in a namespace of its own; dropped afterwards."""
    async with migrated_schema(settings, "gateway", MIGRATIONS, "receipts") as name:
        yield name


@pytest.fixture
async def sql(settings, schema):
    """A plain connection on the schema, for what the store does not offer (ageing rows, watching locks)."""
    connection = await asyncpg.connect(asyncpg_dsn(settings.database_url), server_settings={"search_path": schema})
    yield connection
    await connection.close()


@pytest.fixture
async def store_factory(settings, schema):
    stores: list[PostgresReceiptStore] = []

    async def make() -> PostgresReceiptStore:
        store = PostgresReceiptStore(settings.database_url, schema, pool_size=4)
        await store.start()
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


def _keys(count: int) -> list[str]:
    return sorted(f"m:wamid.{secrets.token_hex(8)}" for _ in range(count))


async def _record(store: PostgresReceiptStore, keys: list[str]) -> set[str]:
    async with store.record(keys) as seen_first:
        return set(seen_first)


async def test_record_yields_only_the_keys_seen_for_the_first_time(store_factory) -> None:
    store = await store_factory()
    a, b, c = _keys(3)
    assert await _record(store, [a, b]) == {a, b}
    assert await _record(store, [b, c]) == {c}
    assert await _record(store, [a, b, c]) == set()
    assert await _record(store, []) == set()
    # Another replica's store sees what this one recorded.
    assert await _record(await store_factory(), [a, b, c]) == set()


async def test_a_block_that_raises_records_nothing(store_factory) -> None:
    store = await store_factory()
    keys = _keys(3)
    with pytest.raises(Oops):
        async with store.record(keys) as seen_first:
            assert seen_first == set(keys)
            raise Oops
    assert await _record(store, keys) == set(keys)


async def test_a_recorder_waiting_on_a_key_gets_it_when_the_holder_rolls_back_and_not_when_it_commits(
        store_factory, sql, schema) -> None:
    holder, waiter = await store_factory(), await store_factory()

    async def blocked_recorders() -> int:
        return await sql.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
                                  "AND wait_event_type = 'Lock'", f"pytake-{schema}")

    for outcome in ("rollback", "commit"):
        key = _keys(1)[0]
        recorded, finish = asyncio.Event(), asyncio.Event()

        async def hold(key: str = key, recorded: asyncio.Event = recorded, finish: asyncio.Event = finish,
                       outcome: str = outcome) -> None:
            async with holder.record([key]) as seen_first:
                assert seen_first == {key}
                recorded.set()
                await finish.wait()
                if outcome == "rollback":
                    raise Oops

        holding = asyncio.create_task(hold())
        await recorded.wait()
        waiting = asyncio.create_task(_record(waiter, [key]))
        # The second forwarder cannot decide while the first one's forward is undecided.
        await eventually(blocked_recorders, lambda count: count == 1, timeout_s=30)
        assert not waiting.done()
        finish.set()
        if outcome == "rollback":
            with pytest.raises(Oops):
                await holding
            assert await asyncio.wait_for(waiting, 30) == {key}  # forwarded by the waiter: nothing lost
        else:
            await holding
            assert await asyncio.wait_for(waiting, 30) == set()  # a redelivery: nothing duplicated


async def test_two_stores_recording_overlapping_keys_at_once_see_each_key_first_once(store_factory) -> None:
    first, second = await store_factory(), await store_factory()
    keys = _keys(6000)
    # Overlapping windows, large enough that the inserts of the two stores meet mid-statement, given
    # in opposite orders: inserted in that order they would deadlock; the store sorts them.
    windows = [keys[start:start + 1000] for start in range(0, 5001, 250)]
    seen = await asyncio.wait_for(asyncio.gather(*(
        _record(store, window if store is first else window[::-1])
        for window in windows for store in (first, second, first, second))), 180)
    firsts = [key for found in seen for key in found]
    assert sorted(firsts) == keys  # every key first-seen, and only once over all transactions


async def test_delete_expired_removes_only_receipts_older_than_the_retention(store_factory, sql) -> None:
    store = await store_factory()
    old, recent = _keys(30), _keys(5)
    await _record(store, old + recent)
    await sql.execute("UPDATE webhook_receipts SET created_at = now() - interval '2 hours' "
                      "WHERE dedup_key = ANY($1::text[])", old)
    assert await store.delete_expired(3600, batch=7) == 30  # several batches
    assert await store.delete_expired(3600, batch=7) == 0
    assert await _record(store, recent) == set()
    assert await _record(store, old) == set(old)  # forgotten after the retention


async def test_an_unreachable_database_is_receipts_unavailable(settings, schema) -> None:
    closed_port = make_url(settings.database_url).set(port=free_port()).render_as_string(hide_password=False)
    store = PostgresReceiptStore(closed_port, schema, timeout_s=3.0)
    await store.start()
    try:
        with pytest.raises(ReceiptsUnavailable):
            await _record(store, _keys(1))
        with pytest.raises(ReceiptsUnavailable):
            await store.delete_expired(3600)
        # A batch of webhook-level errors only (no ids) has nothing to record: it does not wait for the database.
        assert await _record(store, []) == set()
    finally:
        await store.close()


async def test_a_store_not_started_is_receipts_unavailable(settings, schema) -> None:
    store = PostgresReceiptStore(settings.database_url, schema)
    with pytest.raises(ReceiptsUnavailable):
        await _record(store, _keys(1))
