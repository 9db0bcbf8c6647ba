"""The audit service as a real process in the running pipeline: what a customer's
conversation left behind is queryable through its API, statuses arrive out of order,
and a record Kafka delivers again is written once."""

from __future__ import annotations

import secrets
import time
from uuid import UUID, uuid4

import httpx
import pytest

from pytake_contracts import DeadLettered, DeadLetterPayload, encode_event
from pytake_contracts.topics import DEAD_LETTERS
from pytake_devstack import meta_payloads
from pytake_devstack.demo_tenant import DEMO_TENANT
from pytake_devstack.kafka_io import Writer
from pytake_devstack.pytest_plugin import OTHER_TENANT
from pytake_plumbing.auth import AuthSettings, Principal, Role, issue_access_token
from pytake_plumbing.mongo import make_mongo_client

from .waiting import eventually

pytestmark = pytest.mark.integration


def new_wa_id() -> str:
    return "1556" + "".join(secrets.choice("0123456789") for _ in range(7))


async def post_webhook(stack, payload: dict) -> None:
    body = meta_payloads.encode(payload)
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{stack.url('gateway')}/api/v1/webhooks/whatsapp", content=body, headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": meta_payloads.sign(body, DEMO_TENANT.app_secret)})
    assert response.status_code == 200


def status_webhook(wamid: str, name: str, wa_id: str, at: int) -> dict:
    return meta_payloads.envelope(DEMO_TENANT.phone_number_id, {"statuses": [
        {"id": wamid, "status": name, "timestamp": str(at), "recipient_id": wa_id}]})


class AuditApi:
    def __init__(self, stack, organization_id: str) -> None:
        auth = AuthSettings(JWT_SECRET=stack.env["JWT_SECRET"])
        token = issue_access_token(Principal(user_id=uuid4(), organization_id=UUID(organization_id),
                                             role=Role.VIEWER), auth)
        self._base = f"{stack.url('audit')}/api/v1/audit"
        self._headers = {"Authorization": f"Bearer {token}"}

    async def get(self, path: str, **params) -> httpx.Response:
        async with httpx.AsyncClient() as client:
            return await client.get(self._base + path, params=params, headers=self._headers, timeout=10)


async def test_a_conversation_is_queryable_with_its_delivery_timeline(pipeline) -> None:
    demo, other = AuditApi(pipeline, DEMO_TENANT.organization_id), AuditApi(pipeline, OTHER_TENANT.organization_id)
    wa_id = new_wa_id()
    await post_webhook(pipeline, meta_payloads.text_message(DEMO_TENANT.phone_number_id, "Hi", wa_id=wa_id))

    async def outbound() -> list[dict]:
        return (await demo.get("/messages", contact=wa_id, direction="out")).json()["items"]

    (reply,) = await eventually(outbound, lambda items: len(items) == 1 and items[0]["wamid"] is not None)
    wamid = reply["wamid"]
    now = int(time.time())
    for name, at in (("read", now + 2), ("delivered", now + 1), ("sent", now)):  # Meta keeps no order
        await post_webhook(pipeline, status_webhook(wamid, name, wa_id, at))

    # Wait for the three status events themselves: the delivery status alone does not tell, since its
    # "sent" time may come from the sender's message.sent before Meta's "sent" status is stored.
    async def timeline_types() -> list[str]:
        timeline = (await demo.get(f"/conversations/{reply['conversation_id']}/timeline")).json()
        return [entry["event_type"] for entry in timeline["entries"]]

    types = await eventually(timeline_types, lambda found: found.count("message.status_routed") >= 3)
    assert {"message.inbound_routed", "conversation.started", "message.outbound_requested",
            "message.sent"} <= set(types)
    assert types.count("message.status_routed") == 3  # each status once

    status = await demo.get(f"/messages/{wamid}/status")
    assert status.status_code == 200 and set(status.json()["at"]) == {"sent", "delivered", "read"}
    assert status.json()["status"] == "read"
    assert status.json()["conversation_id"] == reply["conversation_id"]

    assert (await other.get(f"/messages/{wamid}/status")).status_code == 404
    assert (await other.get(f"/conversations/{reply['conversation_id']}/timeline")).status_code == 404
    assert (await other.get("/messages", contact=wa_id)).json()["total"] == 0


async def test_a_record_delivered_again_is_written_once(pipeline, settings) -> None:
    marker = secrets.token_hex(6)

    def letter(note: str) -> DeadLettered:
        return DeadLettered(correlation_id=marker, producer="test", payload=DeadLetterPayload(
            origin_topic="x", consumer="test", error=note, attempts=1, original=marker))

    repeated, last = letter("repeated"), letter("last")
    async with Writer(settings.kafka_bootstrap_servers) as producer:
        for event in (repeated, repeated, repeated, last):  # at-least-once: the same record, three times
            await producer.send(settings.topic(DEAD_LETTERS), encode_event(event), key=b"x")
    client = make_mongo_client(settings.mongodb_url)
    events = client[settings.mongodb_database]["events"]
    try:
        async def written() -> list[str]:
            return sorted([d["payload"]["error"] async for d in events.find({"correlation_id": marker})])

        # The three deliveries of "repeated" are one event (one _id): stored once, whichever of
        # the audit's concurrent chunk writes lands first.
        await eventually(written, lambda notes: "last" in notes and "repeated" in notes)
        assert await written() == ["last", "repeated"]
    finally:
        await client.close()
