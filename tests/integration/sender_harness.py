"""A stack of its own for the sender's integration tests: fake Graph API (posting Meta's
status webhooks to the gateway), gateway and router as real processes in a namespace of
their own, and sender processes the tests start, kill and restart themselves."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from pytake_contracts import Event, OutboundMessageRequested, decode_event, encode_event
from pytake_contracts.topics import MESSAGES_OUTBOUND, TopicSpec
from pytake_devstack.demo_tenant import DEMO_FLOW, DEMO_TENANT
from pytake_devstack.kafka_io import Outgoing, Writer, read_topics
from pytake_devstack.paths import STATE_DIR
from pytake_devstack.pytest_plugin import pipeline_env
from pytake_devstack.stack import Stack, Tenant, free_port, free_ports
from pytake_plumbing.messaging import delete_namespace_topics, ensure_topics
from pytake_plumbing.settings import CommonSettings

RESOLVE_S = 20.0  # SENDER_UNCERTAIN_RESOLVE_S of the senders under test


def new_tenant() -> Tenant:
    ids = [str(uuid.uuid4()) for _ in range(4)]
    return Tenant(
        organization_id=ids[0], organization_name=f"Sender test {ids[0][:8]}", slug=f"sender-{ids[0][:8]}",
        number_id=ids[1], phone_number_id="3" + "".join(secrets.choice("0123456789") for _ in range(14)),
        display_phone_number="+1 555 0300", meta_app_id=DEMO_TENANT.meta_app_id,
        verify_token=DEMO_TENANT.verify_token, app_secret=DEMO_TENANT.app_secret,
        access_token=f"token-{ids[0][:8]}", chatbot_id=ids[2], chatbot_name="Sender test bot", flow_id=ids[3],
        flow_name="Sender test flow", flow=DEMO_FLOW)


@dataclass
class SenderProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is committed or handed back."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_lines(self, event: str) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if f'"{event}"' in line:
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    continue
        return lines


@dataclass
class SenderStack:
    stack: Stack
    settings: CommonSettings
    senders: list[SenderProcess] = field(default_factory=list)

    @property
    def graph_url(self) -> str:
        return self.stack.url("fake-graph-api")

    def new_tenant(self) -> Tenant:
        tenant = new_tenant()
        seed = {k: v for k, v in tenant.__dict__.items() if k not in {"flow", "flow_name"}}
        self.stack.run_cli("pytake_router.main", "seed-tenant", stdin=json.dumps(seed))
        return tenant

    def start_sender(self, **env: str) -> SenderProcess:
        port = free_port()
        name = f"sender-{len(self.senders) + 1}"
        log_path = self.stack.log_dir / f"{name}.log"
        full_env = {**self.stack._env(), "SENDER_HTTP_PORT": str(port), **env}
        process = subprocess.Popen([sys.executable, "-m", "pytake_sender.main", "run"], env=full_env,
                                   stdout=open(log_path, "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
                                   start_new_session=True)
        sender = SenderProcess(process, port, log_path)
        self.senders.append(sender)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited; see {log_path}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/v1/ready", timeout=2.0).status_code == 200:
                    return sender
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready; see {log_path}")

    def sender_cli(self, *args: str) -> str:
        return self.stack.run_cli("pytake_sender.main", *args)

    async def inject(self, **failure: Any) -> None:
        async with httpx.AsyncClient() as client:
            (await client.post(f"{self.graph_url}/_fake/failures", json=failure)).raise_for_status()

    async def calls(self, **params: Any) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=30) as client:
            return (await client.get(f"{self.graph_url}/_fake/calls", params=params)).json()

    async def throughput(self, phone_number_id: str) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=30) as client:
            return (await client.get(f"{self.graph_url}/_fake/throughput",
                                     params={"phone_number_id": phone_number_id, "window_s": 1.0})).json()

    async def request(self, tenant: Tenant, contact: str, message: dict[str, Any] | None = None) -> OutboundMessageRequested:
        return (await self.requests(tenant, [contact], message))[0]

    async def requests(self, tenant: Tenant, contacts: list[str],
                       message: dict[str, Any] | None = None) -> list[OutboundMessageRequested]:
        events = [OutboundMessageRequested(
            correlation_id=str(uuid.uuid4()), producer="flow-engine",
            organization_id=uuid.UUID(tenant.organization_id),
            payload={"phone_number_id": tenant.phone_number_id, "to": {"wa_id": contact},
                     "message": message or {"type": "text", "body": f"hello {contact}"}}) for contact in contacts]
        async with Writer(self.settings.kafka_bootstrap_servers) as producer:
            await producer.send_all(Outgoing(self.settings.topic(MESSAGES_OUTBOUND), encode_event(event),
                                             f"{event.organization_id}:{event.payload.to.key}".encode())
                                    for event in events)
        return events

    async def events(self, spec: TopicSpec, organization_id: str) -> list[Event]:
        """Every event of this organization on a topic so far."""
        found: list[Event] = []
        for record in await read_topics(self.settings.kafka_bootstrap_servers, [self.settings.topic(spec)]):
            try:
                event = decode_event(record.value)
            except ValueError:
                continue
            if str(event.organization_id) == organization_id:
                found.append(event)
        return found


def start_sender_stack(servers_env: dict[str, str]) -> SenderStack:
    namespace = "s" + secrets.token_hex(4)
    ports = free_ports()
    env = {
        **pipeline_env(servers_env, namespace),
        "GATEWAY_DEDUP_STORE": "memory",
        "FAKE_GRAPH_WEBHOOK_URL": f"http://127.0.0.1:{ports['gateway']}/api/v1/webhooks/whatsapp",
        "FAKE_GRAPH_APP_SECRET": DEMO_TENANT.app_secret,
        "GRAPH_API_TIMEOUT_S": "2",
        "SENDER_UNCERTAIN_RESOLVE_S": str(RESOLVE_S),
        "SENDER_BACKOFF_BASE_S": "0.05",
        "SENDER_BACKOFF_MAX_S": "0.5",
        "SENDER_SPAM_PAUSE_S": "600",
        "LOG_LEVEL": "INFO",
    }
    settings = CommonSettings.model_validate(env)
    stack = Stack(env=env, log_dir=Path(STATE_DIR) / "test-logs" / namespace, ports=ports)
    asyncio.run(ensure_topics(settings))
    for module in ("pytake_router.main", "pytake_sender.main", "pytake_gateway.main"):
        stack.run_cli(module, "migrate")
    stack.start(["fake-graph-api", "router", "gateway-forwarder", "gateway"])
    return SenderStack(stack, settings)


def stop_sender_stack(sender_stack: SenderStack) -> None:
    for sender in sender_stack.senders:
        sender.stop()
    sender_stack.stack.stop()
    asyncio.run(_drop(sender_stack.settings))


async def _drop(settings: CommonSettings) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(settings.database_url)
    async with engine.begin() as connection:
        for service in ("router", "sender", "gateway"):
            await connection.execute(text(f'DROP SCHEMA IF EXISTS "{settings.db_schema(service)}" CASCADE'))
    await engine.dispose()
    await delete_namespace_topics(settings)

