"""The receipt store stalls → the front door still accepts, the forwarder pauses; it is back → forwarded once.

The stall is real: another session holds an exclusive lock on the receipts table of the pipeline's
PostgreSQL, so the forwarder's statements time out as they would against an unreachable server.
"""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from pytake_devstack import meta_payloads
from pytake_plumbing.database import asyncpg_dsn

from .test_gateway_kafka import about, forward_everything_before, inbound, new_phone_number_id, post_signed
from .waiting import eventually

pytestmark = pytest.mark.integration


async def _pauses(pipeline) -> int:  # noqa: ANN001
    """How often the forwarder has paused for an outage (its log says so once per pause)."""
    log = await asyncio.to_thread((pipeline.log_dir / "gateway-forwarder.log").read_text, errors="replace")
    return log.count("dependency_unavailable_will_retry")


async def test_a_stalled_receipt_store_pauses_forwarding_and_loses_nothing(pipeline, settings) -> None:
    number, wamid = new_phone_number_id(), meta_payloads.new_wamid()
    body = meta_payloads.encode(meta_payloads.text_message(number, "while the receipts are locked", wamid=wamid))
    pauses_before = await _pauses(pipeline)
    holder = await asyncpg.connect(asyncpg_dsn(settings.database_url),
                                   server_settings={"search_path": settings.db_schema("gateway")})
    try:
        lock = holder.transaction()
        await lock.start()
        await holder.execute("LOCK TABLE webhook_receipts IN ACCESS EXCLUSIVE MODE")
        async with httpx.AsyncClient(timeout=60) as client:
            # Storing needs Kafka only: Meta gets its 200 while the database is away.
            accepted = await post_signed(client, pipeline.url("gateway"), body)
            assert accepted.status_code == 200 and accepted.json()["stored"] == 1
            # The forwarder's batch timed out and waits (backing off); nothing went downstream undeduplicated.
            await eventually(lambda: _pauses(pipeline), lambda count: count > pauses_before,
                             timeout_s=60, interval_s=0.3)
            assert about(await inbound(settings), wamid) == []
            await lock.rollback()

            await forward_everything_before(client, settings, pipeline.url("gateway"), number)
        assert len(about(await inbound(settings), wamid)) == 1
    finally:
        await holder.close()
