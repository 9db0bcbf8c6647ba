"""The topic catalog: the one place topics are named, keyed and sized.

Local scripts, tests, compose and Kubernetes all create topics from this list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .envelope import Event
from . import events as ev

DAY_MS = 24 * 3600 * 1000
INTAKE_RECORD_MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    partitions: int
    producer: str
    consumers: tuple[str, ...]
    events: tuple[type[Event], ...]
    retention_ms: int = 7 * DAY_MS
    config: dict[str, str] = field(default_factory=dict)

    def full_name(self, namespace: str = "") -> str:
        """Topic name in a namespace; tests use one namespace per run to stay isolated."""
        return f"{namespace}.{self.name}" if namespace else self.name


WEBHOOK_INTAKE = TopicSpec(
    name="pytake.webhook.intake",
    # One business number's webhooks stay in order: the forwarder keys each of its events by conversation.
    key="{phone_number_id}",
    partitions=6,
    producer="gateway",
    consumers=("gateway",),
    events=(ev.WebhookReceived,),
    # A stored webhook carries Meta's JSON as a string: a body at the gateway's 1 MiB limit can
    # double when escaped. Room for bodies up to 2 MiB.
    config={"max.message.bytes": str(INTAKE_RECORD_MAX_BYTES)},
)
WEBHOOK_INBOUND = TopicSpec(
    name="pytake.webhook.inbound",
    key="{phone_number_id}:{contact_key}",
    partitions=6,
    producer="gateway",
    consumers=("router", "audit"),
    events=(ev.InboundMessageReceived, ev.StatusReceived, ev.WebhookErrorReceived),
)
MESSAGES_ROUTED = TopicSpec(
    name="pytake.messages.routed",
    key="{organization_id}:{contact_key}",
    partitions=6,
    producer="router",
    consumers=("flow-engine", "audit"),
    events=(ev.InboundMessageRouted,),
)
STATUSES_ROUTED = TopicSpec(
    name="pytake.statuses.routed",
    key="{organization_id}:{wamid}",
    partitions=6,
    producer="router",
    # The sender joins each status to the message it sent.
    consumers=("audit", "sender"),
    events=(ev.StatusRouted,),
)
MESSAGES_UNROUTABLE = TopicSpec(
    name="pytake.messages.unroutable",
    key="{phone_number_id}",
    partitions=1,
    producer="router",
    consumers=("audit",),
    events=(ev.MessageUnroutable,),
    retention_ms=30 * DAY_MS,
)
MESSAGES_OUTBOUND = TopicSpec(
    name="pytake.messages.outbound",
    key="{organization_id}:{contact_key}",
    partitions=6,
    producer="flow-engine",
    consumers=("sender", "audit"),
    events=(ev.OutboundMessageRequested,),
)
CONVERSATION_EVENTS = TopicSpec(
    name="pytake.conversations.events",
    key="{organization_id}:{contact_key}",
    partitions=6,
    producer="flow-engine",
    consumers=("audit",),
    events=(ev.ConversationStarted, ev.ConversationAdvanced, ev.ConversationEnded, ev.ConversationHandedOff,
            ev.ConversationFailed),
)
MESSAGES_DELIVERY = TopicSpec(
    name="pytake.messages.delivery",
    key="{organization_id}:{contact_key}",
    partitions=6,
    producer="sender",
    consumers=("audit", "flow-engine"),
    events=(ev.MessageSent, ev.MessageFailed, ev.MessageStatusUpdated),
)
NUMBER_ALERTS = TopicSpec(
    name="pytake.numbers.alerts",
    key="{organization_id}:{phone_number_id}",
    partitions=1,
    producer="sender",
    consumers=("audit",),
    events=(ev.NumberSendingPaused,),
    retention_ms=30 * DAY_MS,
)
REGISTRY_CHANGES = TopicSpec(
    name="pytake.registry.changes",
    key="{organization_id}",
    partitions=1,
    producer="router",
    # Every replica reads all of it (a consumer group of its own), to refresh its caches.
    consumers=("router", "gateway", "sender"),
    events=(ev.RegistryChanged,),
)
DEAD_LETTERS = TopicSpec(
    name="pytake.deadletter",
    key="{origin_topic}",
    partitions=1,
    producer="any",
    consumers=("audit",),
    events=(ev.DeadLettered,),
    retention_ms=30 * DAY_MS,
)

CATALOG: tuple[TopicSpec, ...] = (
    WEBHOOK_INTAKE,
    WEBHOOK_INBOUND,
    MESSAGES_ROUTED,
    STATUSES_ROUTED,
    MESSAGES_UNROUTABLE,
    MESSAGES_OUTBOUND,
    CONVERSATION_EVENTS,
    MESSAGES_DELIVERY,
    REGISTRY_CHANGES,
    DEAD_LETTERS,
    NUMBER_ALERTS,
)
