from __future__ import annotations

from faststream.kafka import KafkaBroker

from pytake_contracts import Event, OutboundMessageRequested
from pytake_contracts.topics import MESSAGES_OUTBOUND
from pytake_plumbing.messaging import EventPublisher, subscribe
from pytake_plumbing.settings import CommonSettings

from ..service.send import Credentials, Deliveries, GraphApi, RetryPolicy, send_requested


def register(broker: KafkaBroker, settings: CommonSettings, graph: GraphApi, credentials: Credentials,
             deliveries: Deliveries, policy: RetryPolicy) -> None:
    publisher = EventPublisher(broker, settings)

    async def handle(event: Event) -> None:
        assert isinstance(event, OutboundMessageRequested)
        await send_requested(event, graph, credentials, deliveries, publisher, policy)

    subscribe(broker, settings, [MESSAGES_OUTBOUND], service="sender", handler=handle,
              accepts=(OutboundMessageRequested,))
