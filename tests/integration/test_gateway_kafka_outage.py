"""Kafka stopped → 503 so Meta retries; Kafka back → the retried webhook is accepted, and the forwarder
passes each message on exactly once: nothing lost, nothing doubled.

Runs its OWN Kafka (scripts/servers.sh with a separate state dir and ports): the shared one is never stopped.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pytake_contracts import InboundMessageReceived
from pytake_contracts.topics import DEAD_LETTERS, WEBHOOK_INBOUND, WEBHOOK_INTAKE
from pytake_devstack import meta_payloads
from pytake_devstack.paths import SERVERS_SCRIPT
from pytake_devstack.stack import free_port
from pytake_plumbing.messaging import ensure_topics
from pytake_plumbing.settings import CommonSettings

from .gateway_processes import start_forwarder, start_gateway
from .test_gateway_kafka import read_topic
from .waiting import eventually

pytestmark = pytest.mark.integration

SECRET = "outage-secret"
PHONE_NUMBER_ID = "100000000000001"


class OwnKafka:
    def __init__(self, state_dir: str) -> None:
        self.port = free_port()
        self.env = {**os.environ, "PYTAKE_STATE_DIR": state_dir, "PYTAKE_KAFKA_PORT": str(self.port),
                    "PYTAKE_KAFKA_CONTROLLER_PORT": str(free_port())}

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(self, action: str) -> None:
        subprocess.run(["bash", str(SERVERS_SCRIPT), action, "kafka"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def outage_setup(servers, namespace, tmp_path_factory):
    kafka = OwnKafka(str(tmp_path_factory.mktemp("own-kafka")))
    kafka.run("up")
    ns = f"{namespace}_outage"
    env = {**servers.env, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "PYTAKE_NAMESPACE": ns,
           "GATEWAY_SECRETS_SOURCE": "demo", "GATEWAY_DEMO_APP_SECRET": SECRET, "GATEWAY_PUBLISH_TIMEOUT_S": "3"}
    settings = CommonSettings.model_validate(env)
    processes = []
    try:
        asyncio.run(ensure_topics(settings, [WEBHOOK_INTAKE, WEBHOOK_INBOUND, DEAD_LETTERS]))
        # The gateway's schema (the forwarder's receipts) in this test's namespace.
        subprocess.run([sys.executable, "-m", "pytake_gateway.main", "migrate"], env={**os.environ, **env},
                       check=True, capture_output=True)
        log_dir = tmp_path_factory.mktemp("outage-logs")
        processes.append(start_gateway(env, log_dir, "gateway-outage"))
        processes.append(start_forwarder(env, log_dir, "gateway-forwarder-outage"))
        yield kafka, processes[0], settings
    finally:
        for process in processes:
            process.stop()
        kafka.run("down")
        asyncio.run(_drop_schema(settings))


async def _drop_schema(settings: CommonSettings) -> None:
    engine = create_async_engine(settings.database_url)
    async with engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA IF EXISTS "{settings.db_schema("gateway")}" CASCADE'))
    await engine.dispose()


def _webhook(text_: str) -> tuple[str, bytes]:
    wamid = meta_payloads.new_wamid()
    return wamid, meta_payloads.encode(meta_payloads.text_message(PHONE_NUMBER_ID, text_, wamid=wamid))


async def _post(client: httpx.AsyncClient, url: str, body: bytes) -> httpx.Response:
    return await client.post(url + "/api/v1/webhooks/whatsapp", content=body, headers={
        "Content-Type": "application/json", "X-Hub-Signature-256": meta_payloads.sign(body, SECRET)})


async def _forwarded_wamids(settings: CommonSettings) -> list[str]:
    events = await read_topic(settings.kafka_bootstrap_servers, settings.topic(WEBHOOK_INBOUND))
    return [e.payload.message.wamid for e in events if isinstance(e, InboundMessageReceived)]


async def test_kafka_down_is_503_and_the_retry_after_it_is_back_is_forwarded_once(outage_setup) -> None:
    kafka, gateway, settings = outage_setup
    before_id, before = _webhook("before the outage")
    during_id, during = _webhook("during the outage")
    after_id, after = _webhook("after the retry")
    async with httpx.AsyncClient(timeout=60) as client:
        assert (await _post(client, gateway.url, before)).status_code == 200

        await asyncio.to_thread(kafka.run, "down")
        refused = await _post(client, gateway.url, during)
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "unavailable"
        ready = await client.get(gateway.url + "/api/v1/ready")
        assert ready.status_code == 503

        await asyncio.to_thread(kafka.run, "up")
        # As Meta does: retry the refused webhook until it is accepted.
        accepted = await eventually(lambda: _post(client, gateway.url, during), lambda r: r.status_code == 200,
                                    timeout_s=120, interval_s=1.0)
        assert accepted.json() == {"status": "accepted", "stored": 1, "ignored": 0}
        # The refused attempt's record may have landed in the intake topic as well, once Kafka was back;
        # its producer keeps order, so it is before this later webhook of the same number.
        assert (await _post(client, gateway.url, after)).status_code == 200

    # Once the later webhook is forwarded, so is every copy stored before it.
    await eventually(lambda: _forwarded_wamids(settings), lambda wamids: after_id in wamids, timeout_s=180,
                     interval_s=1.0)
    wamids = await _forwarded_wamids(settings)
    assert [wamids.count(wamid) for wamid in (before_id, during_id, after_id)] == [1, 1, 1]
