"""PyTake's main job, locally: real servers, five services, a demo conversation."""

from __future__ import annotations

import asyncio
import secrets
import time

import httpx
from cryptography.fernet import Fernet

from pytake_plumbing.mongo import make_mongo_client

from . import meta_payloads
from .demo_tenant import DEMO_TENANT
from .paths import STATE_DIR
from .servers import ensure_servers
from .stack import DEFAULT_PORTS, Stack, stop_pid_files

RUN_DIR = STATE_DIR / "run" / "services"
DEMO_ENV = STATE_DIR / "demo.env"


def demo_secrets() -> dict[str, str]:
    """Per-machine secrets for the demo stack, kept so a restart can read what it encrypted."""
    if DEMO_ENV.exists():
        kept = dict(line.split("=", 1) for line in DEMO_ENV.read_text().splitlines() if "=" in line)
        if "JWT_SECRET" in kept:
            return kept
    values = {"ROUTER_SECRETS_KEYS": Fernet.generate_key().decode(), "PYTAKE_INTERNAL_TOKEN": secrets.token_urlsafe(24),
              "JWT_SECRET": secrets.token_urlsafe(32)}
    DEMO_ENV.parent.mkdir(parents=True, exist_ok=True)
    DEMO_ENV.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    DEMO_ENV.chmod(0o600)
    return values


def _say(gateway: str, text: str, wa_id: str) -> None:
    body = meta_payloads.encode(meta_payloads.text_message(DEMO_TENANT.phone_number_id, text, wa_id=wa_id))
    response = httpx.post(f"{gateway}/api/v1/webhooks/whatsapp", content=body, timeout=15.0, headers={
        "Content-Type": "application/json", "X-Hub-Signature-256": meta_payloads.sign(body, DEMO_TENANT.app_secret)})
    response.raise_for_status()


def _replies_to(fake: str, wa_id: str, at_least: int, timeout_s: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        calls = httpx.get(f"{fake}/_fake/calls", params={"min_count": 1, "wait_s": 1.0}, timeout=5.0).json()
        replies = [c["body"]["text"]["body"] for c in calls if c["body"].get("to") == wa_id and c["status"] == 200]
        if len(replies) >= at_least or time.monotonic() > deadline:
            return replies


async def _audit_count(mongodb_url: str, database: str, wa_id: str, expected: int = 10) -> int:
    """Events about the customer in the audit log, once audit has caught up (or after 15 s)."""
    client = make_mongo_client(mongodb_url)
    deadline = time.monotonic() + 15.0
    try:
        while True:
            count = await client[database]["events"].count_documents({"$or": [
                {"payload.contact.wa_id": wa_id}, {"payload.to.wa_id": wa_id}, {"payload.contact_key": f"p:{wa_id}"}]})
            if count >= expected or time.monotonic() > deadline:
                return count
            await asyncio.sleep(0.2)
    finally:
        await client.close()


def run_demo() -> None:
    started = time.monotonic()
    print("PyTake demo: starting Kafka, PostgreSQL and FerretDB (installed on first run)...", flush=True)
    servers = ensure_servers()
    print(f"  servers ready in {time.monotonic() - started:.1f}s", flush=True)
    stop_pid_files(RUN_DIR)
    env = {
        **servers.env,
        **demo_secrets(),
        "PYTAKE_NAMESPACE": "",
        "GATEWAY_SECRETS_SOURCE": "demo",
        "GATEWAY_DEMO_APP_SECRET": DEMO_TENANT.app_secret,
        "GATEWAY_DEMO_VERIFY_TOKEN": DEMO_TENANT.verify_token,
    }
    stack = Stack(env=env, log_dir=STATE_DIR / "logs", ports=dict(DEFAULT_PORTS), run_dir=RUN_DIR)
    stack.prepare([DEMO_TENANT])
    stack.start()
    print(f"  five services (the gateway in two processes) and the fake Graph API up after {time.monotonic() - started:.1f}s\n", flush=True)

    gateway, fake = stack.url("gateway"), stack.url("fake-graph-api")
    challenge = httpx.get(f"{gateway}/api/v1/webhooks/whatsapp", params={
        "hub.mode": "subscribe", "hub.verify_token": DEMO_TENANT.verify_token, "hub.challenge": "1158201444"}).text
    print(f"Meta's verification handshake answered with the challenge: {challenge}\n")

    wa_id = "1555" + "".join(secrets.choice("0123456789") for _ in range(7))
    print(f"Conversation with customer +{wa_id} on {DEMO_TENANT.display_phone_number} ({DEMO_TENANT.organization_name}):")
    seen = 0
    for text in ("Hi", "Ada"):
        print(f"  customer > {text}", flush=True)
        _say(gateway, text, wa_id)
        replies = _replies_to(fake, wa_id, seen + 1)
        for reply in replies[seen:]:
            print(f"  bot      < {reply}", flush=True)
        seen = len(replies)
    count = asyncio.run(_audit_count(env["MONGODB_URL"], "pytake_audit", wa_id))
    print(f"\nAudit: {count} events about this customer recorded in MongoDB (database pytake_audit).")
    print(f"\nThe stack keeps running ({time.monotonic() - started:.1f}s to here):")
    for name in ("gateway", "gateway-forwarder", "router", "flow-engine", "sender", "audit", "fake-graph-api"):
        print(f"  {name:<17} {stack.url(name)}")
    print(f"  webhook           {gateway}/api/v1/webhooks/whatsapp   (docs: {gateway}/api/v1/docs)")
    print(f"  servers           Kafka {env['KAFKA_BOOTSTRAP_SERVERS']}  PostgreSQL {env['DATABASE_URL']}  "
          f"MongoDB {env['MONGODB_URL']}")
    print(f"  logs              {STATE_DIR / 'logs'}")
    print("Stop everything with: ./pytake stop")
