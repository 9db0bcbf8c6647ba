"""MongoDB stopped while customers write: the bot still answers; once MongoDB is back the
audit catches up with nothing missing.

Runs a MongoDB-compatible server (FerretDB) and a whole stack of its own, in its own
namespace: the shared servers are never stopped."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pytake_devstack import meta_payloads
from pytake_devstack.demo_tenant import DEMO_TENANT
from pytake_devstack.paths import SERVERS_SCRIPT, STATE_DIR
from pytake_devstack.pytest_plugin import _drop_namespace, pipeline_env
from pytake_devstack.servers import Servers
from pytake_devstack.stack import Stack, free_port, free_ports
from pytake_plumbing.mongo import make_mongo_client
from pytake_plumbing.settings import CommonSettings

from .waiting import eventually

pytestmark = pytest.mark.integration

EXPECTED_PER_CONTACT = sorted([  # two messages from one contact, as in test_pipeline
    "webhook.message_received", "webhook.message_received", "message.inbound_routed", "message.inbound_routed",
    "message.outbound_requested", "message.outbound_requested", "message.sent", "message.sent",
    "conversation.started", "conversation.ended"])


class OwnMongo:
    """A FerretDB of this test's own (and the PostgreSQL it stores in), started and stopped with
    the project's script. Stopping "MongoDB" stops FerretDB, the server the audit talks to."""

    def __init__(self) -> None:
        self.state_dir = Path(tempfile.mkdtemp(prefix="pytake-audit-outage-"))
        self.state_dir.chmod(0o755)  # PostgreSQL runs as its own OS user and keeps its data in here
        self.port, self.postgres_port = free_port(), free_port()
        self.url = f"mongodb://127.0.0.1:{self.port}/"

    def _script(self, command: str, *names: str) -> None:
        env = {**os.environ, "PYTAKE_STATE_DIR": str(self.state_dir), "PYTAKE_MONGO_PORT": str(self.port),
               "PYTAKE_POSTGRES_PORT": str(self.postgres_port)}
        subprocess.run(["bash", str(SERVERS_SCRIPT), command, *names], env=env, check=True, timeout=300)

    def up(self) -> None:
        self._script("up", "mongo")

    def down(self) -> None:
        self._script("down", "mongo")

    def remove(self) -> None:
        self._script("down", "mongo", "postgres")
        shutil.rmtree(self.state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def own_mongo() -> Iterator[OwnMongo]:
    mongo = OwnMongo()
    mongo.up()
    try:
        yield mongo
    finally:
        mongo.remove()


@pytest.fixture(scope="module")
def outage_stack(servers: Servers, own_mongo: OwnMongo) -> Iterator[tuple[Stack, CommonSettings]]:
    namespace = "t" + secrets.token_hex(4)
    env = {**pipeline_env(servers.env, namespace), "MONGODB_URL": own_mongo.url}
    ports = free_ports()
    stack = Stack(env=env, log_dir=Path(STATE_DIR) / "test-logs" / f"{namespace}-outage", ports=ports)
    settings = CommonSettings.model_validate(env)
    stack.prepare([DEMO_TENANT])
    try:
        stack.start()
        yield stack, settings
    finally:
        stack.stop()
        asyncio.run(_drop_namespace(settings))


async def say(stack: Stack, wa_id: str, text: str) -> None:
    body = meta_payloads.encode(meta_payloads.text_message(DEMO_TENANT.phone_number_id, text, wa_id=wa_id))
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{stack.url('gateway')}/api/v1/webhooks/whatsapp", content=body, headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": meta_payloads.sign(body, DEMO_TENANT.app_secret)})
    assert response.status_code == 200


async def replies(stack: Stack, wa_id: str) -> list[str]:
    async with httpx.AsyncClient() as client:
        calls = (await client.get(f"{stack.url('fake-graph-api')}/_fake/calls")).json()
    return [c["body"]["text"]["body"] for c in calls if c["body"].get("to") == wa_id]


async def audited(settings: CommonSettings, wa_id: str) -> list[str]:
    client = make_mongo_client(settings.mongodb_url)
    try:
        query = {"$or": [{"payload.contact.wa_id": wa_id}, {"payload.to.wa_id": wa_id},
                         {"payload.contact_key": f"p:{wa_id}"}]}
        return sorted([d["event_type"] async for d in client[settings.mongodb_database]["events"].find(
            query, {"event_type": 1})])
    except Exception:
        return []  # the server is down or starting
    finally:
        await client.close()


async def audit_ready(stack: Stack) -> int:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{stack.url('audit')}/api/v1/ready", timeout=10)).status_code


async def test_replies_go_on_while_mongodb_is_down_and_audit_catches_up(outage_stack, own_mongo) -> None:
    stack, settings = outage_stack
    before = "1557" + secrets.token_hex(3)
    await say(stack, before, "Hi")
    await say(stack, before, "Ada")
    await eventually(lambda: audited(settings, before), lambda types: types == EXPECTED_PER_CONTACT, timeout_s=60)

    own_mongo.down()
    await eventually(lambda: audit_ready(stack), lambda status: status == 503, timeout_s=60)
    during = ["1558" + secrets.token_hex(3) for _ in range(3)]
    for wa_id in during:
        await say(stack, wa_id, "Hi")
    for wa_id in during:
        await eventually(lambda: replies(stack, wa_id), lambda texts: len(texts) == 1, timeout_s=90)
    for wa_id in during:
        await say(stack, wa_id, "Bo")
    for wa_id in during:
        texts = await eventually(lambda: replies(stack, wa_id), lambda texts: len(texts) == 2, timeout_s=90)
        assert texts[1].startswith("Nice to meet you, Bo!")
    assert await audit_ready(stack) == 503  # the replies above really went out while MongoDB was down

    own_mongo.up()
    for wa_id in during:
        types = await eventually(lambda: audited(settings, wa_id), lambda t: t == EXPECTED_PER_CONTACT,
                                 timeout_s=120, interval_s=0.5)
        assert types == EXPECTED_PER_CONTACT  # nothing missing, nothing twice
    assert await audited(settings, before) == EXPECTED_PER_CONTACT  # kept across the restart
    await eventually(lambda: audit_ready(stack), lambda status: status == 200, timeout_s=60)
