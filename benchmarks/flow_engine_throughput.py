"""Inbound messages per second through one flow-engine process, on real Kafka and PostgreSQL.

A 5-node flow (start → question → condition → message → end); each simulated customer
sends two messages (the first starts the conversation, the second answers and ends it).
The messages are written to the routed topic while the engine runs; the clock stops when
every message has its receipt committed, and again when the outbox is fully relayed.

    uv run python benchmarks/flow_engine_throughput.py [--contacts 10000] [--log-level INFO]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time
from pathlib import Path
from uuid import UUID, uuid4

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pytake_contracts import ContactRef, InboundMessage, InboundMessageRouted, RoutedInboundPayload, Route
from pytake_contracts.topics import MESSAGES_ROUTED
from pytake_devstack.kafka_io import Outgoing, Writer
from pytake_devstack.paths import STATE_DIR
from pytake_devstack.servers import ensure_servers
from pytake_devstack.stack import Stack, free_ports
from pytake_plumbing.messaging import delete_namespace_topics, ensure_topics
from pytake_plumbing.settings import CommonSettings

ORG = UUID("0b0b0b0b-0000-4000-8000-000000000001")
FLOW = {"nodes": [
    {"id": "start", "type": "start", "next": "ask"},
    {"id": "ask", "type": "question", "variable": "qty", "text": "How many loaves?", "validation": "number",
     "next": "check"},
    {"id": "check", "type": "condition", "branches": [{"when": "qty > 10", "next": "reply"}], "else": "reply"},
    {"id": "reply", "type": "message", "text": "{{qty}} loaves for {{contact_name}}, coming up.", "next": "end"},
    {"id": "end", "type": "end"},
]}


def routed(flow_id: UUID, wa_id: str, body: str) -> tuple[bytes, bytes]:
    event = InboundMessageRouted(
        organization_id=ORG, correlation_id=secrets.token_hex(8), producer="benchmark",
        payload=RoutedInboundPayload(
            phone_number_id="100000000000077", contact=ContactRef(wa_id=wa_id, profile_name="Bench"),
            message=InboundMessage(wamid="wamid." + secrets.token_hex(12), type="text", timestamp=int(time.time()),
                                   text=body),
            route=Route(organization_id=ORG, chatbot_id=None, flow_id=flow_id)))
    return f"{ORG}:p:{wa_id}".encode(), event.model_dump_json().encode()


async def count(engine, schema: str, query: str) -> int:
    async with engine.connect() as connection:
        return int((await connection.execute(text(query.format(schema=schema)))).scalar_one())


async def measure(settings: CommonSettings, flow_id: UUID, contacts: int) -> None:
    wa_ids = [f"1777{index:07d}" for index in range(contacts)]
    records = [routed(flow_id, wa, "hi") for wa in wa_ids] + [routed(flow_id, wa, "12") for wa in wa_ids]
    total = len(records)
    schema = settings.db_schema("flow-engine")
    db = create_async_engine(settings.database_url)
    producer = Writer(settings.kafka_bootstrap_servers, {"linger.ms": 5})
    try:
        started = time.perf_counter()
        await producer.send_all(Outgoing(settings.topic(MESSAGES_ROUTED), value, key) for key, value in records)
        produced = time.perf_counter() - started
        while (done := await count(db, schema, 'SELECT count(*) FROM "{schema}".inbound_receipts')) < total:
            await asyncio.sleep(0.1)
        handled = time.perf_counter() - started
        while await count(db, schema, 'SELECT count(*) FROM "{schema}".outbox WHERE published_at IS NULL') > 0:
            await asyncio.sleep(0.1)
        relayed = time.perf_counter() - started
        outbox = await count(db, schema, 'SELECT count(*) FROM "{schema}".outbox')
        ended = await count(db, schema, "SELECT count(*) FROM \"{schema}\".conversations WHERE status = 'ended'")
    finally:
        await producer.close()
        await db.dispose()
    assert done == total and ended == contacts, (done, ended)
    print(f"inbound messages:          {total} ({contacts} conversations, 5-node flow)")
    print(f"produced to Kafka in:      {produced:.2f} s")
    print(f"state committed (inbox):   {handled:.2f} s  -> {total / handled:,.0f} inbound messages/s")
    print(f"outbox relayed to Kafka:   {relayed:.2f} s  -> {total / relayed:,.0f} inbound messages/s end to end")
    print(f"events relayed:            {outbox} (replies and conversation events)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contacts", type=int, default=10000)
    parser.add_argument("--log-level", default="INFO", help="the engine's LOG_LEVEL (INFO logs every event)")
    args = parser.parse_args()
    servers = ensure_servers()
    namespace = "bench" + secrets.token_hex(3)
    env = {**servers.env, "PYTAKE_NAMESPACE": namespace, "JWT_SECRET": secrets.token_urlsafe(32),
           "LOG_LEVEL": args.log_level, "FLOW_ENGINE_OUTBOX_INTERVAL_S": "0.2"}
    settings = CommonSettings.model_validate(env)
    ports = free_ports()
    stack = Stack(env=env, log_dir=Path(STATE_DIR) / "bench-logs" / namespace, ports=ports)
    asyncio.run(ensure_topics(settings))
    try:
        stack.run_cli("pytake_flow_engine.main", "migrate")
        flow_id = uuid4()
        stack.run_cli("pytake_flow_engine.main", "publish-flow", stdin=json.dumps({
            "organization_id": str(ORG), "flow_id": str(flow_id), "name": "bench", "definition": FLOW}))
        stack.start(["flow-engine"])
        asyncio.run(measure(settings, flow_id, args.contacts))
    finally:
        stack.stop()
        asyncio.run(_drop(settings))
        servers.stop_started()


async def _drop(settings: CommonSettings) -> None:
    engine = create_async_engine(settings.database_url)
    async with engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA IF EXISTS "{settings.db_schema("flow-engine")}" CASCADE'))
    await engine.dispose()
    await delete_namespace_topics(settings)


if __name__ == "__main__":
    main()
