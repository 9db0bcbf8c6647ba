from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from faststream.kafka import KafkaBroker

from pytake_contracts import Event, InboundMessageRouted
from pytake_contracts.topics import MESSAGES_ROUTED
from pytake_plumbing.messaging import subscribe
from pytake_plumbing.settings import CommonSettings

from ..adapters.db.unit_of_work import SqlUnitOfWork
from ..service.conversations import handle_inbound
from ..service.outbox_relay import OutboxRelay


def register(broker: KafkaBroker, settings: CommonSettings, uow_factory: Callable[[], SqlUnitOfWork],
             relay: OutboxRelay, clock: Callable[[], datetime]) -> None:
    async def handle(event: Event) -> None:
        assert isinstance(event, InboundMessageRouted)
        if await handle_inbound(event, uow_factory(), clock, settings.topic):
            await relay.flush()

    subscribe(broker, settings, [MESSAGES_ROUTED], service="flow-engine", handler=handle,
              accepts=(InboundMessageRouted,))
