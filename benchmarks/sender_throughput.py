"""Sends per second of ONE sender process against the fake Graph API, limits raised.

    uv run python benchmarks/sender_throughput.py [--messages 20000] [--numbers 4] [--latency-ms 0]

A backlog of outbound requests is put on Kafka first (numbers at 1,000 messages/s each,
the most Meta allows; pair limit raised; per-event INFO logs off), then one sender process
starts and drains it: claim in PostgreSQL, rate permits, Graph API call, outcome recorded,
MessageSent published, offsets committed. The rate is measured at the fake Graph API, from
its first accepted call to its last. Real servers are needed (started if absent), as for
the tests; the router runs too, for the numbers' access tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from cryptography.fernet import Fernet

from pytake_contracts import OutboundMessageRequested, encode_event
from pytake_contracts.topics import MESSAGES_OUTBOUND
from pytake_devstack.demo_tenant import DEMO_FLOW, DEMO_TENANT
from pytake_devstack.kafka_io import Outgoing, Writer
from pytake_devstack.paths import STATE_DIR
from pytake_devstack.servers import ensure_servers
from pytake_devstack.stack import Stack, Tenant, free_ports
from pytake_plumbing.messaging import delete_namespace_topics, ensure_topics
from pytake_plumbing.settings import CommonSettings


def tenant(index: int) -> Tenant:
    ids = [str(uuid.uuid4()) for _ in range(4)]
    return Tenant(
        organization_id=ids[0], organization_name=f"Bench {index}", slug=f"bench-{ids[0][:8]}", number_id=ids[1],
        phone_number_id=f"4{index:02d}" + "".join(secrets.choice("0123456789") for _ in range(12)),
        display_phone_number="+1 555 0400", meta_app_id=DEMO_TENANT.meta_app_id,
        verify_token=DEMO_TENANT.verify_token, app_secret=DEMO_TENANT.app_secret,
        access_token=f"bench-token-{index}", chatbot_id=ids[2], chatbot_name="Bench", flow_id=ids[3],
        flow_name="Bench", flow=DEMO_FLOW)


async def publish_backlog(settings: CommonSettings, tenants: list[Tenant], messages: int) -> None:
    records = []
    for i in range(messages):
        owner = tenants[i % len(tenants)]
        event = OutboundMessageRequested(
            correlation_id=str(uuid.uuid4()), producer="benchmark", organization_id=uuid.UUID(owner.organization_id),
            payload={"phone_number_id": owner.phone_number_id, "to": {"wa_id": f"1555{i % 5000:07d}"},
                     "message": {"type": "text", "body": f"Your order #{i} is ready for pickup."}})
        records.append(Outgoing(settings.topic(MESSAGES_OUTBOUND), encode_event(event),
                                f"{event.organization_id}:{event.payload.to.key}".encode()))
    async with Writer(settings.kafka_bootstrap_servers, {"linger.ms": 20}) as producer:
        await producer.send_all(records)


def accepted_calls(graph_url: str) -> tuple[list[float], int]:
    """Arrival times of the accepted calls, and how many distinct requests they carried."""
    calls = [c for c in httpx.get(f"{graph_url}/_fake/calls", timeout=120).json() if c["status"] == 200]
    return sorted(c["received_at"] for c in calls), len({c["body"]["biz_opaque_callback_data"] for c in calls})


def count_accepted(graph_url: str) -> int:
    return int(httpx.get(f"{graph_url}/_fake/throughput", timeout=60).json()["accepted"])


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--numbers", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the fake Graph API's answer time")
    args = parser.parse_args()

    servers = ensure_servers()
    namespace = "b" + secrets.token_hex(4)
    ports = free_ports()
    env = {**servers.env, "PYTAKE_NAMESPACE": namespace, "ROUTER_SECRETS_KEYS": Fernet.generate_key().decode(),
           "PYTAKE_INTERNAL_TOKEN": secrets.token_urlsafe(16), "JWT_SECRET": secrets.token_urlsafe(32),
           "FAKE_GRAPH_LATENCY_MS": str(args.latency_ms), "LOG_LEVEL": "WARNING",
           "SENDER_PAIR_BURST": "1000", "SENDER_MAX_BUFFERED": "10000"}
    settings = CommonSettings.model_validate(env)
    stack = Stack(env=env, log_dir=Path(STATE_DIR) / "bench-logs" / namespace, ports=ports)
    tenants = [tenant(i) for i in range(args.numbers)]
    sender: subprocess.Popen[bytes] | None = None
    try:
        asyncio.run(ensure_topics(settings))
        for module in ("pytake_router.main", "pytake_sender.main"):
            stack.run_cli(module, "migrate")
        for owner in tenants:
            seed = {k: v for k, v in owner.__dict__.items() if k not in {"flow", "flow_name"}}
            stack.run_cli("pytake_router.main", "seed-tenant", stdin=json.dumps(seed))
            stack.run_cli("pytake_sender.main", "set-rate", owner.organization_id, owner.phone_number_id, "1000")
        stack.start(["fake-graph-api", "router"])
        print(f"publishing {args.messages} outbound requests for {args.numbers} numbers ...", flush=True)
        asyncio.run(publish_backlog(settings, tenants, args.messages))

        stack.log_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        sender = subprocess.Popen([sys.executable, "-m", "pytake_sender.main", "run"],
                                  env=stack._env(), stdout=open(stack.log_dir / "sender.log", "ab"),  # noqa: SIM115
                                  stderr=subprocess.STDOUT, start_new_session=True)
        graph_url = stack.url("fake-graph-api")
        graph_pid = stack.processes["fake-graph-api"].pid
        deadline = started + 600
        cpu_from: tuple[int, float, float] | None = None  # accepted so far, CPU of the sender and fake Graph API
        while (accepted := count_accepted(graph_url)) < args.messages:
            if sender.poll() is not None or time.perf_counter() > deadline:
                raise SystemExit(f"sender stopped or too slow; see {stack.log_dir / 'sender.log'}")
            if cpu_from is None and accepted:
                cpu_from = (accepted, cpu_seconds(sender.pid), cpu_seconds(graph_pid))
            time.sleep(0.5)
        wall = time.perf_counter() - started
        cpu_to = (args.messages, cpu_seconds(sender.pid), cpu_seconds(graph_pid))
        times, distinct = accepted_calls(graph_url)
        span = times[-1] - times[0]
        print(f"sender: {len(times)} calls accepted for {distinct} distinct requests, {args.numbers} numbers at 1,000/s, "
              f"fake Graph API latency {args.latency_ms:.0f} ms")
        print(f"  sends/s while draining (first to last call at the fake Graph API): {len(times) / span:,.0f}")
        print(f"  wall clock from process start (includes ~startup): {wall:.1f} s")
        if cpu_from is not None and cpu_to[0] > cpu_from[0]:
            # CPU per send is steadier than sends/s on a shared machine, where other work takes turns.
            sends = cpu_to[0] - cpu_from[0]
            print(f"  CPU per send while draining: sender {1000 * (cpu_to[1] - cpu_from[1]) / sends:.2f} ms, "
                  f"fake Graph API {1000 * (cpu_to[2] - cpu_from[2]) / sends:.2f} ms")
    finally:
        if sender is not None and sender.poll() is None:
            sender.terminate()
            sender.wait(30)
        stack.stop()
        asyncio.run(_drop(settings))
        servers.stop_started()


async def _drop(settings: CommonSettings) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(settings.database_url)
    async with engine.begin() as connection:
        for service in ("router", "sender"):
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{settings.db_schema(service)}" CASCADE'))
    await engine.dispose()
    await delete_namespace_topics(settings)


if __name__ == "__main__":
    main()
