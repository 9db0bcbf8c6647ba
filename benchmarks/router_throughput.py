"""Routed events/s of one router process with a warm route cache.

    uv run python benchmarks/router_throughput.py [--events 50000] [--numbers 10]
    BENCH_LOG_LEVEL=WARNING uv run python benchmarks/router_throughput.py   # without the per-event log line

Uses the running local servers (or KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL), in a
namespace of its own that it drops afterwards. It seeds tenants, writes the webhook
events to Kafka first, then starts one router process (`pytake-router run`, real
logging at INFO) and reads what it routes. The rate is taken between the routed
records' own Kafka timestamps, after the first `--warmup` events (cache misses, the
consumer joining its group) are out of the way.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from uuid import uuid4

from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pytake_contracts import InboundMessageReceived, encode_event
from pytake_contracts.topics import MESSAGES_ROUTED, MESSAGES_UNROUTABLE, WEBHOOK_INBOUND
from pytake_devstack.kafka_io import Outgoing, TopicReader, Writer
from pytake_devstack.servers import ensure_servers
from pytake_devstack.stack import free_port
from pytake_plumbing.database import make_engine, make_session_factory, run_migrations
from pytake_plumbing.messaging import delete_namespace_topics, ensure_topics
from pytake_router.adapters.crypto import SecretBox
from pytake_router.adapters.db.unit_of_work import SqlUnitOfWork
from pytake_router.app import MIGRATIONS, SERVICE
from pytake_router.service.registry import TenantSeed, seed_tenant
from pytake_router.settings import RouterSettings


def phone(i: int) -> str:
    return f"7{i:014d}"


async def seed(settings: RouterSettings, numbers: int) -> None:
    engine = make_engine(settings.database_url, settings.db_schema(SERVICE))
    box = SecretBox(settings.secrets_keys.get_secret_value())
    try:
        for i in range(numbers):
            await seed_tenant(SqlUnitOfWork(make_session_factory(engine)), box, TenantSeed(
                organization_id=uuid4(), organization_name=f"Bench {i}", slug=f"bench-{i}-{secrets.token_hex(3)}",
                number_id=uuid4(), phone_number_id=phone(i), display_phone_number="+1 555 0100",
                meta_app_id="1", verify_token="v", app_secret="s", access_token="a", chatbot_id=uuid4(),
                chatbot_name="bot", flow_id=uuid4()))
    finally:
        await engine.dispose()


async def produce(settings: RouterSettings, count: int, numbers: int) -> None:
    topic = settings.topic(WEBHOOK_INBOUND)
    records = []
    for i in range(count):
        number = phone(i % numbers)
        event = InboundMessageReceived(correlation_id=uuid4().hex, producer="bench", payload={
            "phone_number_id": number, "contact": {"wa_id": f"1555{i % 5000:07d}"},
            "message": {"wamid": f"wamid.bench.{i}", "type": "text", "timestamp": 1764000000,
                        "text": "I'd like to order two croissants for tomorrow morning, please."}})
        records.append(Outgoing(topic, encode_event(event), f"{number}:{i % 5000}".encode()))
    async with Writer(settings.kafka_bootstrap_servers, {"linger.ms": 20}) as producer:
        await producer.send_all(records)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def collect(settings: RouterSettings, count: int, warmup: int, timeout_s: float,
                  router: subprocess.Popen[bytes]) -> tuple[list[int], float]:
    consumer = TopicReader(settings.kafka_bootstrap_servers,
                           [settings.topic(MESSAGES_ROUTED), settings.topic(MESSAGES_UNROUTABLE)], start="beginning")
    await consumer.start()
    stamps: list[int] = []
    unroutable = 0
    cpu_at_warmup: float | None = None
    deadline = time.monotonic() + timeout_s
    try:
        while len(stamps) + unroutable < count and time.monotonic() < deadline:
            if router.poll() is not None:
                raise SystemExit(f"the router exited with {router.returncode}")
            for record in await consumer.poll(timeout_s=1.0, max_records=10000):
                if record.topic.endswith(MESSAGES_ROUTED.name):
                    stamps.append(record.timestamp)
                else:
                    unroutable += 1
            if cpu_at_warmup is None and len(stamps) >= warmup:
                cpu_at_warmup = cpu_seconds(router.pid)
        cpu_used = cpu_seconds(router.pid) - (cpu_at_warmup or 0.0)
    finally:
        await consumer.stop()
    if unroutable:
        raise SystemExit(f"{unroutable} events were unroutable: the benchmark's tenants are wrong")
    return sorted(stamps), cpu_used


async def drop(settings: RouterSettings) -> None:
    engine = create_async_engine(settings.database_url)
    async with engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA IF EXISTS "{settings.db_schema(SERVICE)}" CASCADE'))
    await engine.dispose()
    await delete_namespace_topics(settings)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--numbers", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    servers = ensure_servers()
    env = {**os.environ, **servers.env, "PYTAKE_NAMESPACE": "bench" + secrets.token_hex(4),
           "ROUTER_SECRETS_KEYS": Fernet.generate_key().decode(), "PYTAKE_INTERNAL_TOKEN": secrets.token_hex(8),
           "JWT_SECRET": secrets.token_hex(16), "ROUTER_HTTP_PORT": str(free_port()),
           "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO")}
    settings = RouterSettings.model_validate(env)
    total = args.events + args.warmup
    router: subprocess.Popen[bytes] | None = None
    try:
        asyncio.run(ensure_topics(settings))
        run_migrations(MIGRATIONS, settings.database_url, settings.db_schema(SERVICE))
        asyncio.run(seed(settings, args.numbers))
        started = time.perf_counter()
        asyncio.run(produce(settings, total, args.numbers))
        print(f"produced {total} webhook events in {time.perf_counter() - started:.1f}s")
        with tempfile.TemporaryDirectory() as logs:
            log = open(Path(logs) / "router.log", "wb")  # noqa: SIM115 - owned by the child
            profile = ["-m", "cProfile", "-o", os.environ["BENCH_PROFILE"]] if os.environ.get("BENCH_PROFILE") else []
            router = subprocess.Popen([sys.executable, *profile, "-m", "pytake_router.main", "run"], env=env, stdout=log,
                                      stderr=subprocess.STDOUT)
            stamps, cpu_used = asyncio.run(collect(settings, total, args.warmup, args.timeout, router))
            log.close()
        if len(stamps) < total:
            raise SystemExit(f"only {len(stamps)} of {total} events routed within {args.timeout}s")
        measured = stamps[args.warmup:]
        seconds = (measured[-1] - measured[0]) / 1000
        print(f"routed {len(measured)} events (after {args.warmup} warm-up) in {seconds:.2f}s "
              f"by one router process, {args.numbers} numbers")
        print(f"routed events/s: {len(measured) / seconds:,.0f}")
        # On a shared machine the wall-clock rate depends on what else runs; CPU time does not.
        print(f"router CPU used: {cpu_used:.2f}s, i.e. {len(measured) / cpu_used:,.0f} events per CPU-second "
              f"(load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    finally:
        if router is not None:
            router.terminate()
            router.wait(30)
        asyncio.run(drop(settings))
        servers.stop_started()


if __name__ == "__main__":
    main()
