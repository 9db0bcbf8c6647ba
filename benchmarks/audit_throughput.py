"""Audit events written per second by one audit process (batched writes), on real Kafka and
the MongoDB-compatible server.

A realistic mix is written to the catalog topics first (per customer turn: inbound routed,
conversation event, outbound request, message sent, two statuses); then one
`pytake-audit run` process starts and the clock runs from its first written batch to the
last (read from its committed offsets: a batch is committed once it is in MongoDB); the
events after that first batch are counted. Then every event is checked to be in MongoDB once.

    uv run python benchmarks/audit_throughput.py [--events 60000] [--batch 5000] [--server-pid PID ...]
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

from pytake_audit.samples import conversation, inbound, outbound, sent, status
from pytake_audit.settings import AuditSettings
from pytake_contracts import Event, encode_event
from pytake_contracts.events import ConversationAdvanced, ConversationStarted
from pytake_contracts.topics import CATALOG, TopicSpec
from pytake_devstack.kafka_io import Admin, Outgoing, Writer
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
    async with Writer(settings.kafka_bootstrap_servers, {"linger.ms": 20}) as producer:
        began = time.perf_counter()
        await producer.send_all(
            Outgoing(settings.topic(TOPIC_OF[type(event)]), encode_event(event), key.encode(),
                     [("correlation_id", event.correlation_id.encode())]) for event, key in items)
    return time.perf_counter() - began


def start_audit(namespace: str, batch: int, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "PYTAKE_NAMESPACE": namespace, "AUDIT_HTTP_PORT": str(port),
           "JWT_SECRET": secrets.token_urlsafe(32), "AUDIT_BATCH_MAX_RECORDS": str(batch), "LOG_LEVEL": "INFO"}
    log = open(log_path, "wb")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen([sys.executable, "-m", "pytake_audit.main", "run"], env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    return process, f"http://127.0.0.1:{port}"


async def committed(admin: Admin, group: str) -> int:
    return sum((await admin.committed(group)).values())


async def measure(settings: CommonSettings, expected: int, process: subprocess.Popen[bytes],
                  server_pids: list[int]) -> tuple[float, int, float]:
    """Progress is read from the audit's committed offsets: it commits a batch only once the batch
    is in MongoDB. (Counting documents instead would make FerretDB scan the whole collection
    every poll, taking CPU from the process being measured.)"""
    admin = Admin(settings.kafka_bootstrap_servers)
    group = settings.consumer_group("audit")
    first_seen, count_then, server_cpu = None, 0, 0.0
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"audit exited with {process.returncode}")
        count = await committed(admin, group)
        now = time.perf_counter()
        if first_seen is None and count > 0:
            first_seen, count_then = now, count
            server_cpu = tree_cpu_seconds(server_pids)
        if count >= expected:
            assert first_seen is not None
            server_cpu = tree_cpu_seconds(server_pids) - server_cpu
            return now - first_seen, expected - count_then, server_cpu
        await asyncio.sleep(0.05)


async def verify(settings: CommonSettings, items: list[tuple[Event, str]]) -> None:
    """Every event is in MongoDB, once."""
    client = make_mongo_client(settings.mongodb_url)
    try:
        stored = [doc["_id"] async for doc in client[settings.mongodb_database]["events"].find({}, {"_id": 1})]
    finally:
        await client.close()
    expected = {str(event.event_id) for event, _ in items}
    if len(stored) != len(expected) or set(stored) != expected:
        raise RuntimeError(f"MongoDB holds {len(stored)} documents ({len(set(stored) & expected)} of the "
                           f"{len(expected)} events)")


async def cleanup(settings: CommonSettings) -> None:
    client = make_mongo_client(settings.mongodb_url)
    await client.drop_database(settings.mongodb_database)
    await client.close()
    await delete_namespace_topics(settings)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pids: list[int]) -> float:
    """CPU time of these processes and their live children (PostgreSQL works in one child per connection)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, todo, seen = 0.0, list(pids), set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue  # ended meanwhile
        todo += children.get(pid, [])
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--batch", type=int, default=AuditSettings.model_fields["batch_max_records"].default,
                        help="AUDIT_BATCH_MAX_RECORDS (default: the service's)")
    parser.add_argument("--server-pid", type=int, action="append", default=[],
                        help="also report the CPU this process and its children used per event written "
                             "(FerretDB; again for PostgreSQL where FerretDB stores in it)")
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
        elapsed, counted, server_cpu = asyncio.run(measure(settings, len(items), process, args.server_pid))
        total = time.perf_counter() - started
        cpu = cpu_seconds(process.pid)
        ready = httpx.get(url + "/api/v1/ready", timeout=5).status_code
        asyncio.run(verify(settings, items))
        print(f"audit wrote {counted} events in {elapsed:.2f} s: {counted / elapsed:,.0f} events/s "
              f"(batches of up to {args.batch}; process start to last write {total:.1f} s; ready={ready}); "
              f"all {len(items)} in MongoDB once")
        print(f"audit process CPU: {cpu:.1f} s, {cpu / len(items) * 1e6:.0f} us per event")
        if args.server_pid:
            print(f"server CPU while writing: {server_cpu:.1f} s, {server_cpu / counted * 1e6:.0f} us per event")
        print("target: >= 5,000 events/s")
    finally:
        if process is not None:
            process.terminate()
            process.wait(30)
        asyncio.run(cleanup(settings))
        print(f"audit log: {log_path}")


if __name__ == "__main__":
    main()
