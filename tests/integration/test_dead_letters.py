"""A poison record is dead-lettered with its reason, and the consumer carries on."""

from __future__ import annotations

import secrets

import pytest

from pytake_contracts.topics import MESSAGES_ROUTED
from pytake_devstack.kafka_io import Writer
from pytake_plumbing.mongo import make_mongo_client

from .waiting import eventually

pytestmark = pytest.mark.integration


async def test_undecodable_record_is_dead_lettered(pipeline, settings) -> None:
    marker = secrets.token_hex(6)
    async with Writer(settings.kafka_bootstrap_servers) as producer:
        await producer.send(settings.topic(MESSAGES_ROUTED), f'{{"poison": "{marker}"'.encode(), key=b"x")
    client = make_mongo_client(settings.mongodb_url)
    events = client[settings.mongodb_database]["events"]

    async def dead_letters() -> list[dict]:
        return [d async for d in events.find({"event_type": "system.dead_lettered",
                                              "payload.consumer": "flow-engine",
                                              "payload.original": {"$regex": marker}})]

    try:
        found = await eventually(dead_letters, lambda docs: len(docs) >= 1)
    finally:
        await client.close()
    (letter,) = found
    assert letter["payload"]["origin_topic"] == settings.topic(MESSAGES_ROUTED)
    assert letter["payload"]["consumer"] == "flow-engine"
    assert letter["payload"]["error"].startswith("undecodable")
