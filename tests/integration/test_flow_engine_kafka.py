"""The flow engine as a real process on real Kafka and PostgreSQL: a multi-step
conversation, a SIGKILL between the state commit and the offset commit, a cyclic flow,
the REST API and the simulator CLI."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from pytake_contracts import ContactRef, InboundMessage, InboundMessageRouted, RoutedInboundPayload, Route
from pytake_contracts.topics import CONVERSATION_EVENTS, MESSAGES_OUTBOUND, MESSAGES_ROUTED
from pytake_devstack.kafka_io import Admin, ConsumerGroupState, Partition, Record, TopicReader, Writer
from pytake_devstack.paths import STATE_DIR
from pytake_devstack.stack import Stack, free_ports
from pytake_plumbing.auth import AuthSettings, Principal, Role, issue_access_token
from pytake_plumbing.messaging import delete_namespace_topics, ensure_topics
from pytake_plumbing.settings import CommonSettings

from .waiting import eventually

pytestmark = pytest.mark.integration

ORG = UUID("0f0e0d0c-0000-4000-8000-0000000000c1")


@pytest.fixture(scope="module")
def engine_stack(servers, namespace: str) -> Iterator[Stack]:
    """One flow-engine process in a namespace of its own (nothing else consumes its topics)."""
    env = {
        **servers.env,
        "PYTAKE_NAMESPACE": namespace + "fek",
        "JWT_SECRET": secrets.token_urlsafe(32),
        "FLOW_ENGINE_OUTBOX_INTERVAL_S": "0.5",
        "LOG_LEVEL": "INFO",
    }
    ports = free_ports()
    stack = Stack(env=env, log_dir=Path(STATE_DIR) / "test-logs" / env["PYTAKE_NAMESPACE"], ports=ports)
    settings = CommonSettings.model_validate(env)
    asyncio.run(ensure_topics(settings))
    stack.run_cli("pytake_flow_engine.main", "migrate")
    try:
        stack.start(["flow-engine"])
        yield stack
    finally:
        stack.stop()
        asyncio.run(_drop(settings))


async def _drop(settings: CommonSettings) -> None:
    engine = create_async_engine(settings.database_url)
    async with engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA IF EXISTS "{settings.db_schema("flow-engine")}" CASCADE'))
    await engine.dispose()
    await delete_namespace_topics(settings)


def kafka_settings(stack: Stack) -> CommonSettings:
    return CommonSettings.model_validate(stack.env)


class TopicLog:
    """Every record of some topics since the start, kept as they arrive (duplicates included)."""

    def __init__(self, settings: CommonSettings, topics: list[str]) -> None:
        self.settings = settings
        self.topics = topics
        self.records: list[dict] = []

    async def __aenter__(self) -> TopicLog:
        self.reader = TopicReader(self.settings.kafka_bootstrap_servers, self.topics, start="beginning")
        await self.reader.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.reader.stop()

    async def poll(self) -> list[dict]:
        self.records.extend(json.loads(record.value) for record in await self.reader.poll(timeout_s=0.2))
        return self.records

    async def for_contact(self, contact_key: str) -> list[dict]:
        await self.poll()
        return [r for r in self.records if r["payload"].get("contact_key") == contact_key
                or _to_key(r) == contact_key]


def _to_key(record: dict) -> str | None:
    to = record["payload"].get("to")
    return f"p:{to['wa_id']}" if to and to.get("wa_id") else None


@pytest.fixture(scope="module")
async def kafka_log(engine_stack: Stack) -> AsyncIterator[TopicLog]:
    settings = kafka_settings(engine_stack)
    async with TopicLog(settings, [settings.topic(MESSAGES_OUTBOUND), settings.topic(CONVERSATION_EVENTS)]) as log:
        yield log


async def send(stack: Stack, flow_id: UUID, wa_id: str, body: str | None,
               reply_id: str | None = None) -> Record:
    """Returns where the message landed."""
    settings = kafka_settings(stack)
    wamid = "wamid." + secrets.token_hex(10)
    event = InboundMessageRouted(
        organization_id=ORG, correlation_id=secrets.token_hex(8), producer="test",
        payload=RoutedInboundPayload(
            phone_number_id="100000000000009", contact=ContactRef(wa_id=wa_id, profile_name="Ada"),
            message=InboundMessage(wamid=wamid, type="interactive" if reply_id else "text",
                                   timestamp=int(time.time()), text=body, reply_id=reply_id),
            route=Route(organization_id=ORG, chatbot_id=None, flow_id=flow_id)))
    async with Writer(settings.kafka_bootstrap_servers) as producer:
        return await producer.send(settings.topic(MESSAGES_ROUTED), event.model_dump_json().encode(),
                                   key=f"{ORG}:p:{wa_id}".encode())


def publish(stack: Stack, nodes: list[dict], **extra: object) -> UUID:
    flow_id = uuid4()
    out = stack.run_cli("pytake_flow_engine.main", "publish-flow", stdin=json.dumps({
        "organization_id": str(ORG), "flow_id": str(flow_id), "name": "kafka test",
        "definition": {"nodes": nodes, **extra}}))
    assert json.loads(out) == {"version": 1}
    return flow_id


def new_contact() -> str:
    return "1555" + "".join(secrets.choice("0123456789") for _ in range(7))


def replies(records: list[dict]) -> list[dict]:
    return [r["payload"]["message"] for r in records if r["event_type"] == "message.outbound_requested"]


def lifecycle(records: list[dict]) -> list[str]:
    return [r["event_type"] for r in records if r["event_type"].startswith("conversation.")]


SHOP = [
    {"id": "start", "type": "start", "next": "menu"},
    {"id": "menu", "type": "buttons", "text": "Hi {{contact_name}}! What would you like?", "variable": "choice",
     "buttons": [{"id": "order", "title": "Order bread", "next": "qty"},
                 {"id": "hours", "title": "Opening hours", "next": "hours"}]},
    {"id": "hours", "type": "end", "text": "We open at 7."},
    {"id": "qty", "type": "question", "variable": "qty", "text": "How many loaves?", "validation": "number",
     "retry_text": "Please answer with a number.", "max_retries": 2, "next": "size"},
    {"id": "size", "type": "condition", "branches": [{"when": "qty > 10", "next": "big"}], "else": "small"},
    {"id": "big", "type": "message", "text": "{{qty}} loaves: we'll call you to confirm.", "next": "end"},
    {"id": "small", "type": "message", "text": "{{qty}} loaves, ready in an hour.", "next": "end"},
    {"id": "end", "type": "end", "text": "Thanks, {{contact_name}}!"},
]


async def test_multi_step_conversation_with_buttons_validation_and_a_branch(engine_stack, kafka_log) -> None:
    flow_id = publish(engine_stack, SHOP)
    wa = new_contact()
    contact = f"p:{wa}"
    await send(engine_stack, flow_id, wa, "hello")
    records = await eventually(lambda: kafka_log.for_contact(contact), lambda r: len(replies(r)) >= 1)
    (menu,) = replies(records)
    assert menu["type"] == "buttons" and menu["body"] == "Hi Ada! What would you like?"
    assert [b["id"] for b in menu["buttons"]] == ["order", "hours"]

    await send(engine_stack, flow_id, wa, "Order bread", reply_id="order")
    await send(engine_stack, flow_id, wa, "a dozen")
    await send(engine_stack, flow_id, wa, "12")
    records = await eventually(lambda: kafka_log.for_contact(contact),
                               lambda r: lifecycle(r)[-1:] == ["conversation.ended"])
    assert [m.get("body") for m in replies(records)] == [
        "Hi Ada! What would you like?", "How many loaves?", "Please answer with a number.",
        "12 loaves: we'll call you to confirm.", "Thanks, Ada!"]
    assert lifecycle(records) == ["conversation.started", "conversation.advanced", "conversation.advanced",
                                  "conversation.ended"]
    ended = [r for r in records if r["event_type"] == "conversation.ended"][0]["payload"]
    assert ended["flow_version"] == 1 and ended["node_id"] == "end"
    # Every outbound request keeps the inbound message's correlation id.
    assert all(r["correlation_id"] for r in records)


class GroupView:
    """A consumer group seen from outside: its state, its committed offsets, and moving them."""

    def __init__(self, settings: CommonSettings, group: str) -> None:
        self.settings = settings
        self.group = group

    async def __aenter__(self) -> GroupView:
        self.admin = Admin(self.settings.kafka_bootstrap_servers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def state(self) -> ConsumerGroupState:
        return await self.admin.group_state(self.group)

    async def committed(self, tp: Partition) -> int:
        return (await self.admin.committed(self.group, [tp])).get(tp, -1)

    async def commit(self, tp: Partition, offset: int) -> None:
        """Commits from outside the group (no member of it): Kafka takes it only while the group is empty."""
        await self.admin.commit(self.group, {tp: offset})


async def test_a_batch_whose_state_was_committed_but_not_its_offset_gives_no_second_replies_after_a_sigkill(
        engine_stack, kafka_log) -> None:
    flow_id = publish(engine_stack, [
        {"id": "s", "type": "start", "next": "q"},
        {"id": "q", "type": "question", "variable": "word", "text": "Say something", "next": "a"},
        {"id": "a", "type": "message", "text": "You said {{word}}", "next": "b"},
        {"id": "b", "type": "end", "text": "Goodbye"},
    ])
    wa = new_contact()
    contact = f"p:{wa}"
    await send(engine_stack, flow_id, wa, "hi")
    await eventually(lambda: kafka_log.for_contact(contact), lambda r: len(replies(r)) == 1)
    answer = await send(engine_stack, flow_id, wa, "bread")
    await eventually(lambda: kafka_log.for_contact(contact), lambda r: lifecycle(r)[-1:] == ["conversation.ended"])
    settings = kafka_settings(engine_stack)
    where = Partition(answer.topic, answer.partition)
    async with GroupView(settings, settings.consumer_group("flow-engine")) as group:
        # The answer's state and its offset are both committed...
        await eventually(lambda: group.committed(where), lambda offset: offset > answer.offset)
        process = engine_stack.processes.pop("flow-engine")
        os.kill(process.pid, signal.SIGKILL)  # no shutdown hook runs
        process.wait(30)
        # ...and the offset goes back to before the answer, as if the crash had come between the two
        # commits. Kafka takes a commit from outside the group once the killed member's session is over.
        await eventually(group.state, lambda state: state == ConsumerGroupState.EMPTY, timeout_s=60)
        await group.commit(where, answer.offset)
        engine_stack.start(["flow-engine"])
        # The restarted engine reads the answer again and passes it.
        await eventually(lambda: group.committed(where), lambda offset: offset > answer.offset, timeout_s=60)
    # A message afterwards: its reply comes out after anything the second reading could have published
    # (one key, one partition of the replies' topic; the lifecycle events are on a topic of their own).
    await send(engine_stack, flow_id, wa, "again")
    records = await eventually(lambda: kafka_log.for_contact(contact),
                               lambda r: [m.get("body") for m in replies(r)].count("Say something") == 2,
                               timeout_s=60)
    assert [m.get("body") for m in replies(records)] == ["Say something", "You said bread", "Goodbye",
                                                          "Say something"]
    assert lifecycle(records).count("conversation.ended") == 1
    assert len({r["event_id"] for r in records}) == len(records)  # no record published twice


async def test_a_cyclic_flow_is_parked_and_the_engine_serves_others(engine_stack, kafka_log) -> None:
    cyclic = publish(engine_stack, [
        {"id": "s", "type": "start", "next": "a"},
        {"id": "a", "type": "condition", "branches": [{"when": "true", "next": "b"}], "else": "b"},
        {"id": "b", "type": "message", "text": "round and round", "next": "a"},
    ])
    healthy = publish(engine_stack, SHOP)
    stuck, fine = new_contact(), new_contact()
    await send(engine_stack, cyclic, stuck, "hi")
    await send(engine_stack, healthy, fine, "hi")
    records = await eventually(lambda: kafka_log.for_contact(f"p:{stuck}"),
                               lambda r: "conversation.failed" in lifecycle(r))
    failed = [r for r in records if r["event_type"] == "conversation.failed"][0]["payload"]
    assert "more than 100 nodes" in failed["error"] and failed["status"] == "failed"
    assert replies(records) == []
    served = await eventually(lambda: kafka_log.for_contact(f"p:{fine}"), lambda r: len(replies(r)) == 1)
    assert replies(served)[0]["type"] == "buttons"
    await send(engine_stack, healthy, fine, "Opening hours", reply_id="hours")
    served = await eventually(lambda: kafka_log.for_contact(f"p:{fine}"), lambda r: len(replies(r)) == 2)
    assert replies(served)[1]["body"] == "We open at 7."


def _token(stack: Stack, role: Role = Role.ORG_ADMIN) -> dict[str, str]:
    auth = AuthSettings.model_validate({"JWT_SECRET": stack.env["JWT_SECRET"]})
    principal = Principal(user_id=uuid4(), organization_id=ORG, role=role)
    return {"Authorization": f"Bearer {issue_access_token(principal, auth)}"}


async def test_rest_api_publish_simulate_and_read_conversations(engine_stack) -> None:
    base = engine_stack.url("flow-engine") + "/api/v1"
    admin = _token(engine_stack)
    async with httpx.AsyncClient(base_url=base, timeout=30) as api:
        created = (await api.post("/flows", headers=admin, json={"name": "Shop", "definition": {"nodes": SHOP}}))
        assert created.status_code == 201, created.text
        flow_id = created.json()["id"]
        assert (await api.post(f"/flows/{flow_id}/publish", headers=admin)).json()["version"] == 1
        simulated = await api.post(f"/flows/{flow_id}/versions/1/simulate", headers=admin, json={
            "inputs": ["hi", {"reply_id": "order"}, "many", "3"]})
        result = simulated.json()
        assert result["status"] == "ended" and result["variables"]["qty"] == "3"
        bot = [t["message"].get("body") for t in result["transcript"] if t["from"] == "bot"]
        assert bot == ["Hi Simulated customer! What would you like?", "How many loaves?",
                       "Please answer with a number.", "3 loaves, ready in an hour.", "Thanks, Simulated customer!"]

        wa = new_contact()
        await send(engine_stack, UUID(flow_id), wa, "hi")

        async def listed() -> list[dict]:
            return (await api.get("/conversations", headers=_token(engine_stack, Role.VIEWER),
                                  params={"contact_key": f"p:{wa}"})).json()

        (conversation,) = await eventually(listed, lambda rows: len(rows) == 1)
        assert conversation["status"] == "waiting" and conversation["node_id"] == "menu"
        ended = await api.post(f"/conversations/{conversation['id']}/end", headers=_token(engine_stack, Role.AGENT))
        assert ended.status_code == 200 and ended.json()["status"] == "ended"
        assert (await api.get("/flows", headers={"Authorization": "Bearer nope"})).status_code == 401


def test_simulate_cli_runs_a_flow_file_without_kafka(engine_stack, tmp_path: Path) -> None:
    flow_file = tmp_path / "flow.json"
    flow_file.write_text(json.dumps({"nodes": SHOP}))
    result = subprocess.run(
        [sys.executable, "-m", "pytake_flow_engine.main", "simulate", "--file", str(flow_file),
         "--input", "hi", "--input", "Opening hours"],
        env={**engine_stack._env(), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},  # no Kafka needed
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    output = json.loads(result.stdout)
    assert output["status"] == "ended" and output["variables"]["choice"] == "Opening hours"
    assert output["transcript"][-1]["message"]["body"] == "We open at 7."
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"nodes": [{"id": "s", "type": "start", "next": "x"}, {"id": "e", "type": "end"}]}))
    result = subprocess.run(
        [sys.executable, "-m", "pytake_flow_engine.main", "simulate", "--file", str(broken), "--input", "hi"],
        env=engine_stack._env(), capture_output=True, text=True, timeout=120)
    assert json.loads(result.stdout)["valid"] is False
