"""Rejected webhooks never reach Kafka; accepted ones are there when the gateway answers."""

from __future__ import annotations

import secrets

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from pytake_contracts import InboundMessageReceived, decode_event
from pytake_contracts.topics import WEBHOOK_INBOUND
from pytake_devstack import meta_payloads
from pytake_devstack.demo_tenant import DEMO_TENANT

from .waiting import eventually

pytestmark = pytest.mark.integration


async def read_topic(bootstrap: str, topic: str) -> list:
    """Every record now in the topic: read up to the end offsets taken first."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(consumer, topic)]
        consumer.assign(partitions)
        end = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        records = []
        for tp in partitions:
            while await consumer.position(tp) < end[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                records.extend(batch.get(tp, []))
        return [decode_event(r.value) for r in records]
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    known = consumer.partitions_for_topic(topic)
    if not known:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - metadata for an unassigned topic
        known = consumer.partitions_for_topic(topic)
    assert known, f"topic {topic} has no partitions"
    return known


async def test_only_the_valid_webhook_is_stored(pipeline, settings) -> None:
    marker = secrets.token_hex(6)
    url = f"{pipeline.url('gateway')}/api/v1/webhooks/whatsapp"
    good = meta_payloads.encode(meta_payloads.text_message(DEMO_TENANT.phone_number_id, f"good {marker}"))
    forged = meta_payloads.encode(meta_payloads.text_message(DEMO_TENANT.phone_number_id, f"forged {marker}"))
    broken = f'{{"object":"whatsapp_business_account","entry":[{{"text":"broken {marker}"'.encode()
    async with httpx.AsyncClient() as client:
        bad_sig = await client.post(url, content=forged, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": meta_payloads.sign(forged, "not-the-secret")})
        malformed = await client.post(url, content=broken, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": meta_payloads.sign(broken, DEMO_TENANT.app_secret)})
        accepted = await client.post(url, content=good, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": meta_payloads.sign(good, DEMO_TENANT.app_secret)})
    assert bad_sig.status_code == 401
    assert malformed.status_code == 400
    assert accepted.status_code == 200

    async def stored() -> list[str]:
        events = await read_topic(settings.kafka_bootstrap_servers, settings.topic(WEBHOOK_INBOUND))
        texts = [e.payload.message.text or "" for e in events if isinstance(e, InboundMessageReceived)]
        return [text for text in texts if marker in text]

    # All three share a partition key, so once the accepted one is readable the
    # rejected ones, posted before it, would be too.
    mine = await eventually(stored, lambda texts: len(texts) >= 1, timeout_s=10)
    assert mine == [f"good {marker}"]
