"""Kafka wiring of the sender: the outbound lanes, status joins, registry cache refresh."""

from __future__ import annotations

from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker

from pytake_contracts import Event, RegistryChanged, StatusRouted, decode_event
from pytake_contracts.topics import DEAD_LETTERS, MESSAGES_OUTBOUND, REGISTRY_CHANGES, STATUSES_ROUTED
from pytake_plumbing.logs import get_logger
from pytake_plumbing.messaging import EventPublisher, dead_letter_event, subscribe

from ..service.send import PRODUCER, Sender
from ..service.statuses import StatusJoins, join_status
from ..settings import SenderSettings
from .outbound_consumer import OutboundConsumer

log = get_logger(__name__)


def outbound_consumer(settings: SenderSettings, sender: Sender, publisher: EventPublisher) -> OutboundConsumer:
    async def dead_letter(record: ConsumerRecord, error: str, attempts: int) -> None:
        try:
            correlation = decode_event(record.value or b"").correlation_id
        except ValueError:
            correlation = "unknown"
        letter = dead_letter_event(record, consumer=PRODUCER, error=error, attempts=attempts,
                                   correlation_id=correlation)
        await publisher.publish(DEAD_LETTERS, letter, record.topic)

    return OutboundConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, topic=settings.topic(MESSAGES_OUTBOUND),
        group_id=settings.consumer_group("sender"), handler=sender.handle, dead_letter=dead_letter,
        max_buffered=settings.max_buffered, max_active=settings.max_active,
        commit_interval_s=settings.commit_interval_s,
        membership=settings.group_membership(settings.consumer_group("sender")))


def register(broker: KafkaBroker, settings: SenderSettings, deliveries: StatusJoins, publisher: EventPublisher,
             forget_credentials) -> None:  # type: ignore[no-untyped-def]
    async def on_status(event: Event) -> None:
        assert isinstance(event, StatusRouted)
        await join_status(event, deliveries, publisher)

    # A group of its own, apart from the outbound consumer's.
    subscribe(broker, settings, [STATUSES_ROUTED], service="sender-statuses", handler=on_status,
              accepts=(StatusRouted,))

    async def on_registry_change(event: Event) -> None:
        assert isinstance(event, RegistryChanged)
        if event.organization_id and event.payload.phone_number_id:
            forget_credentials(event.organization_id, event.payload.phone_number_id)

    subscribe(broker, settings, [REGISTRY_CHANGES], service="sender", handler=on_registry_change,
              accepts=(RegistryChanged,), broadcast=True)
