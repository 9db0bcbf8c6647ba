"""Audit events written per second by one audit process (batched writes), on real Kafka and
the MongoDB-compatible server.

A realistic mix is written to the catalog topics first (per customer turn: inbound routed,
conversation event, outbound request, message sent, two statuses); then one
`pytake-audit run` process starts and the clock runs from its first written event to the
last. Every event is checked to be in MongoDB once.

    uv run python benchmarks/audit_throughput.py [--events 60000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import httpx
from aiokafka import AIOKafkaProducer

from pytake_audit.samples import conversation, inbound, outbound, sent, status
from pytake_contracts import Event, encode_event
from pytake_contracts.events import ConversationAdvanced, ConversationStarted
from pytake_contracts.topics import CATALOG, TopicSpec
from pytake_devstack.stack import free_port
from pytake_plumbing.messaging import delete_namespace_topics, ensure_topics
from pytake_plumbing.mongo import make_mongo_client
from pytake_plumbing.settings import CommonSettings

TOPIC_OF: dict[type[Event], TopicSpec] = {kind: spec for spec in CATALOG for kind in spec.events}


def customer_turns(turns: int) -> list[tuple[Event, str]]:
    """(event, key) in the order the services would publish them; 6 events per turn."""
    organizations = [uuid4() for _ in range(4)]
    flow_id = uuid4()
    start = datetime.now(UTC) - timedelta(hours=1)
    out: list[tuple[Event, str]] = []
    for turn in range(turns):
        org = organizations[turn % len(organizations)]
        wa_id = f"1555{turn // 2:07d}"  # two turns per customer
        at = start + timedelta(milliseconds=turn)
        message = inbound(org, wa_id, f"message {turn}", at)
        conversation_id = uuid4()
        kind = ConversationStarted if turn % 2 == 0 else ConversationAdvanced
        request = outbound(message, conversation_id, f"reply {turn}")
        wamid = f"wamid.bench.{turn}"
        key = f"{org}:p:{wa_id}"
        out += [(message, key),
                (conversation(kind, message, conversation_id, flow_id, "ask", "waiting", ["start", "ask"]), key),
                (request, key), (sent(request, wamid), key),
                (status(org, wamid, "delivered", at + timedelta(seconds=1), wa_id=wa_id), f"{org}:{wamid}"),
                (status(org, wamid, "read", at + timedelta(seconds=2), wa_id=wa_id), f"{org}:{wamid}")]
    return out


async def produce(settings: CommonSettings, items: list[tuple[Event, str]]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all",
                                linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    began = time.perf_counter()
    try:
        pending = []
        for event, key in items:
            pending.append(await producer.send(settings.topic(TOPIC_OF[type(event)]), encode_event(event),
                                               key=key.encode(), headers=[("correlation_id",
                                                                           event.correlation_id.encode())]))
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - began


def start_audit(namespace: str, batch: int, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTAKE_NAMESPACE": namespace, "AUDIT_HTTP_PORT": str(port),
           "JWT_SECRET": secrets.token_urlsafe(32), "AUDIT_BATCH_MAX_RECORDS": str(batch), "LOG_LEVEL": "INFO"}
    log = open(log_path, "wb")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen([sys.executable, "-m", "pytake_audit.main", "run"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    return process, f"http://127.0.0.1:{port}"


async def measure(settings: CommonSettings, expected: int, process: subprocess.Popen[bytes]) -> tuple[float, int]:
    client = make_mongo_client(settings.mongodb_url)
    events = client[settings.mongodb_database]["events"]
    try:
        first_seen, count_then = None, 0
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"audit exited with {process.returncode}")
            count = await events.count_documents({})
            now = time.perf_counter()
            if first_seen is None and count > 0:
                first_seen, count_then = now, count
            if count >= expected:
                assert first_seen is not None
                return now - first_seen, expected - count_then
            await asyncio.sleep(0.05)
    finally:
        await client.close()


async def cleanup(settings: CommonSettings) -> None:
    client = make_mongo_client(settings.mongodb_url)
    await client.drop_database(settings.mongodb_database)
    await client.close()
    await delete_namespace_topics(settings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=1000, help="AUDIT_BATCH_MAX_RECORDS")
    args = parser.parse_args()
    namespace = "bench" + secrets.token_hex(4)
    settings = CommonSettings.model_validate({**os.environ, "PYTAKE_NAMESPACE": namespace})
    items = customer_turns(max(1, args.events // 6))
    asyncio.run(ensure_topics(settings))
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"{namespace}-audit.log"
    process = None
    try:
        produced_s = asyncio.run(produce(settings, items))
        print(f"produced {len(items)} events to Kafka in {produced_s:.1f} s")
        started = time.perf_counter()
        process, url = start_audit(namespace, args.batch, log_path)
        elapsed, counted = asyncio.run(measure(settings, len(items), process))
        total = time.perf_counter() - started
        ready = httpx.get(url + "/api/v1/ready", timeout=5).status_code
        print(f"audit wrote {counted} events in {elapsed:.2f} s: {counted / elapsed:,.0f} events/s "
              f"(batches of up to {args.batch}; process start to last write {total:.1f} s; ready={ready})")
        print("target: >= 5,000 events/s")
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        asyncio.run(cleanup(settings))
        print(f"audit log: {log_path}")


if __name__ == "__main__":
    main()
