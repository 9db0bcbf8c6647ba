"""The lean record producer against the real Kafka: acknowledged records, reports served on the event loop."""

from __future__ import annotations

import asyncio

import pytest

from pytake_contracts import WebhookErrorPayload, WebhookErrorReceived
from pytake_contracts.topics import WEBHOOK_INBOUND
from pytake_devstack.stack import free_port
from pytake_plumbing.record_producer import KafkaUnavailable, RecordProducer
from pytake_plumbing.settings import CommonSettings

from .test_gateway_kafka import read_topic

pytestmark = pytest.mark.integration


def _event(marker: str) -> WebhookErrorReceived:
    return WebhookErrorReceived(correlation_id=marker, producer="test",
                                payload=WebhookErrorPayload(phone_number_id="100000000000001", title=marker))


async def test_every_record_is_acknowledged_and_in_the_topic_in_order(topics: CommonSettings) -> None:
    producer = RecordProducer(topics, "test-record-producer", linger_ms=2)
    await producer.start()
    try:
        events = [_event(f"rp-{i}") for i in range(300)]
        # Many publishes in flight at once: each future completes once Kafka acknowledged its records.
        await asyncio.wait_for(asyncio.gather(*(producer.publish_all([(WEBHOOK_INBOUND, event, "rp-key")])
                                                for event in events)), timeout=60)
        await producer.publish_all([])  # nothing to send is done at once
    finally:
        await producer.stop()
    stored = [e.correlation_id for e in await read_topic(topics.kafka_bootstrap_servers, topics.topic(WEBHOOK_INBOUND))
              if e.correlation_id.startswith("rp-")]
    assert stored == [event.correlation_id for event in events]  # one key: one partition, publish order kept


async def test_an_unreachable_kafka_fails_the_publish_instead_of_hanging(settings: CommonSettings) -> None:
    nowhere = settings.model_copy(update={"kafka_bootstrap_servers": f"127.0.0.1:{free_port()}"})
    producer = RecordProducer(nowhere, "test-record-producer-down", delivery_timeout_ms=1500)
    await producer.start()
    try:
        with pytest.raises(KafkaUnavailable):
            await asyncio.wait_for(producer.publish(WEBHOOK_INBOUND, _event("rp-down"), "k"), timeout=30)
    finally:
        await producer.stop()
