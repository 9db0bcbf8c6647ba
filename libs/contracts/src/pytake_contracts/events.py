"""Every event PyTake publishes, one class per (event_type, schema_version)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field, model_validator

from .envelope import Contract, Event

__all__ = [
    "ContactRef",
    "InboundMessage",
    "InboundMessagePayload",
    "StatusPayload",
    "Route",
    "OutboundText",
    "ReplyButton",
    "OutboundButtons",
    "ListRow",
    "ListSection",
    "OutboundList",
    "OutboundTemplate",
    "OutboundMedia",
    "WebhookReceivedPayload",
    "WebhookReceived",
    "InboundMessageReceived",
    "StatusReceived",
    "WebhookErrorPayload",
    "WebhookErrorReceived",
    "RoutedInboundPayload",
    "InboundMessageRouted",
    "RoutedStatusPayload",
    "StatusRouted",
    "UnroutablePayload",
    "MessageUnroutable",
    "OutboundRequestPayload",
    "OutboundMessageRequested",
    "ConversationPayload",
    "ConversationStarted",
    "ConversationAdvanced",
    "ConversationEnded",
    "ConversationHandedOff",
    "ConversationErrorPayload",
    "ConversationFailed",
    "MessageSentPayload",
    "MessageSent",
    "MessageFailedPayload",
    "MessageFailed",
    "RegistryChangedPayload",
    "RegistryChanged",
    "DeadLetterPayload",
    "DeadLettered",
    "OutboundMessage",
]

# --- shared value types -----------------------------------------------------


class ContactRef(Contract):
    """A WhatsApp user. Since 2026 Meta may give only a business-scoped user id."""

    wa_id: str | None = Field(default=None, description="Phone-number based WhatsApp id, when Meta shares it.")
    user_id: str | None = Field(default=None, description="Business-scoped user id (BSUID).")
    profile_name: str | None = None

    @model_validator(mode="after")
    def _identified(self) -> ContactRef:
        if not (self.wa_id or self.user_id):
            raise ValueError("a contact needs a wa_id or a user_id")
        return self

    @property
    def key(self) -> str:
        """Stable conversation key: the business-scoped id when present, else the phone id."""
        return f"u:{self.user_id}" if self.user_id else f"p:{self.wa_id}"


class InboundMessage(Contract):
    wamid: str
    type: str = Field(description="Meta's message type: text, interactive, button, image, location, ...")
    timestamp: int = Field(description="Unix seconds, as Meta sent it.")
    text: str | None = Field(default=None, description="Text body, or the title of a button/list reply.")
    reply_id: str | None = Field(default=None, description="Id of the chosen button or list row.")
    context_wamid: str | None = Field(default=None, description="The message this one replies to.")
    raw: dict[str, Any] = Field(default_factory=dict, description="Meta's message object, unchanged.")


APP_FIELD_DESCRIPTION = ("The Meta app whose secret verified the webhook; the router routes the event only to "
                         "numbers bound to that app. None only from a gateway without per-app secrets (demo mode).")


class InboundMessagePayload(Contract):
    phone_number_id: str
    meta_app_id: str | None = Field(default=None, description=APP_FIELD_DESCRIPTION)
    display_phone_number: str | None = None
    contact: ContactRef
    message: InboundMessage


class StatusPayload(Contract):
    phone_number_id: str
    meta_app_id: str | None = Field(default=None, description=APP_FIELD_DESCRIPTION)
    wamid: str
    status: Literal["sent", "delivered", "read", "failed", "deleted", "warning"] | str
    timestamp: int
    recipient: ContactRef
    errors: list[dict[str, Any]] = Field(default_factory=list)
    raw: dict[str, Any] = Field(default_factory=dict)


class Route(Contract):
    organization_id: UUID
    chatbot_id: UUID | None
    flow_id: UUID | None


class OutboundText(Contract):
    type: Literal["text"] = "text"
    body: str = Field(min_length=1, max_length=4096)


class ReplyButton(Contract):
    id: str = Field(min_length=1, max_length=256)
    title: str = Field(min_length=1, max_length=20, description="Meta: at most 20 characters.")


class OutboundButtons(Contract):
    type: Literal["buttons"] = "buttons"
    body: str = Field(min_length=1, max_length=1024)
    buttons: list[ReplyButton] = Field(min_length=1, max_length=3, description="Meta: at most 3 reply buttons.")
    header: str | None = Field(default=None, max_length=60)
    footer: str | None = Field(default=None, max_length=60)


class ListRow(Contract):
    id: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=24)
    description: str | None = Field(default=None, max_length=72)


class ListSection(Contract):
    title: str | None = Field(default=None, max_length=24)
    rows: list[ListRow] = Field(min_length=1, max_length=10)


class OutboundList(Contract):
    type: Literal["list"] = "list"
    body: str = Field(min_length=1, max_length=4096)
    button: str = Field(min_length=1, max_length=20, description="Label of the button that opens the list.")
    sections: list[ListSection] = Field(min_length=1, max_length=10)
    header: str | None = Field(default=None, max_length=60)
    footer: str | None = Field(default=None, max_length=60)

    @model_validator(mode="after")
    def _at_most_ten_rows(self) -> OutboundList:
        if sum(len(section.rows) for section in self.sections) > 10:
            raise ValueError("a list holds at most 10 rows in all")
        return self


class OutboundTemplate(Contract):
    """An approved template: the only kind allowed outside the 24-hour window."""

    type: Literal["template"] = "template"
    name: str = Field(min_length=1, max_length=512)
    language: str = "en_US"
    components: list[dict[str, Any]] = Field(default_factory=list, description="Meta's template components.")


class OutboundMedia(Contract):
    type: Literal["image", "audio", "video", "document", "sticker"]
    link: str | None = None
    media_id: str | None = None
    caption: str | None = Field(default=None, max_length=1024)
    filename: str | None = None

    @model_validator(mode="after")
    def _has_source(self) -> OutboundMedia:
        if not (self.link or self.media_id):
            raise ValueError("media needs a link or a media_id")
        return self


OutboundMessage = Annotated[
    OutboundText | OutboundButtons | OutboundList | OutboundTemplate | OutboundMedia, Field(discriminator="type")
]


# --- gateway intake -> gateway forwarder --------------------------------------


class WebhookReceivedPayload(Contract):
    """A signed webhook POST, stored before Meta got its 200; the forwarder splits and deduplicates it."""

    phone_number_id: str = Field(description="The business number every change in `body` is for.")
    meta_app_id: str | None = Field(default=None, description="The Meta app whose secret signed the POST.")
    body: str = Field(description="Meta's webhook JSON: the POST exactly as signed when all of it is for this "
                                  "number, else the object and this number's entries and changes only.")


class WebhookReceived(Event):
    event_type: Literal["webhook.received"] = "webhook.received"
    schema_version: Literal[1] = 1
    payload: WebhookReceivedPayload


# --- gateway -> router --------------------------------------------------------


class InboundMessageReceived(Event):
    event_type: Literal["webhook.message_received"] = "webhook.message_received"
    schema_version: Literal[1] = 1
    payload: InboundMessagePayload


class StatusReceived(Event):
    event_type: Literal["webhook.status_received"] = "webhook.status_received"
    schema_version: Literal[1] = 1
    payload: StatusPayload


class WebhookErrorPayload(Contract):
    """An error Meta reported in a webhook's `value.errors` (not tied to one message)."""

    phone_number_id: str
    business_account_id: str | None = Field(default=None, description="The webhook entry's id (WABA id).")
    code: int | None = Field(default=None, description="Meta's error code.")
    title: str | None = None
    message: str | None = None
    raw: dict[str, Any] = Field(default_factory=dict, description="Meta's error object, unchanged.")


class WebhookErrorReceived(Event):
    event_type: Literal["webhook.error_received"] = "webhook.error_received"
    schema_version: Literal[1] = 1
    payload: WebhookErrorPayload


# --- router -> flow engine, audit --------------------------------------------


class RoutedInboundPayload(InboundMessagePayload):
    route: Route


class InboundMessageRouted(Event):
    event_type: Literal["message.inbound_routed"] = "message.inbound_routed"
    schema_version: Literal[1] = 1
    payload: RoutedInboundPayload


class RoutedStatusPayload(StatusPayload):
    organization_id: UUID


class StatusRouted(Event):
    event_type: Literal["message.status_routed"] = "message.status_routed"
    schema_version: Literal[1] = 1
    payload: RoutedStatusPayload


class UnroutablePayload(Contract):
    # Also "number_not_bound_to_app": the webhook was signed with the secret of another Meta app than
    # the number's (kept out of the Literal, which old consumers' schemas enumerate).
    reason: Literal["unknown_number", "inactive_number", "no_chatbot"] | str
    phone_number_id: str
    original_event_type: str
    original: dict[str, Any]


class MessageUnroutable(Event):
    event_type: Literal["message.unroutable"] = "message.unroutable"
    schema_version: Literal[1] = 1
    payload: UnroutablePayload


# --- flow engine -> sender, audit --------------------------------------------


class OutboundRequestPayload(Contract):
    phone_number_id: str
    to: ContactRef
    conversation_id: UUID | None = None
    message: OutboundMessage


class OutboundMessageRequested(Event):
    event_type: Literal["message.outbound_requested"] = "message.outbound_requested"
    schema_version: Literal[1] = 1
    payload: OutboundRequestPayload


class ConversationPayload(Contract):
    conversation_id: UUID
    flow_id: UUID
    flow_version: int
    contact_key: str
    node_id: str | None = None
    status: str
    visited: list[str] = Field(
        default_factory=list,
        description="Node ids executed while handling the message, in order (feeds the audit's flow funnel).",
    )


class ConversationStarted(Event):
    event_type: Literal["conversation.started"] = "conversation.started"
    schema_version: Literal[1] = 1
    payload: ConversationPayload


class ConversationAdvanced(Event):
    event_type: Literal["conversation.advanced"] = "conversation.advanced"
    schema_version: Literal[1] = 1
    payload: ConversationPayload


class ConversationEnded(Event):
    event_type: Literal["conversation.ended"] = "conversation.ended"
    schema_version: Literal[1] = 1
    payload: ConversationPayload


class ConversationHandedOff(Event):
    """The bot is paused for this conversation until a person releases it."""

    event_type: Literal["conversation.handed_off"] = "conversation.handed_off"
    schema_version: Literal[1] = 1
    payload: ConversationPayload


class ConversationErrorPayload(ConversationPayload):
    error: str


class ConversationFailed(Event):
    """The flow could not go on (e.g. MAX_FLOW_ITERATIONS); the conversation is parked."""

    event_type: Literal["conversation.failed"] = "conversation.failed"
    schema_version: Literal[1] = 1
    payload: ConversationErrorPayload


# --- sender -> audit ---------------------------------------------------------


class MessageSentPayload(Contract):
    request_id: UUID = Field(description="event_id of the outbound request that was sent.")
    phone_number_id: str
    to: ContactRef
    wamid: str
    conversation_id: UUID | None = None


class MessageSent(Event):
    event_type: Literal["message.sent"] = "message.sent"
    schema_version: Literal[1] = 1
    payload: MessageSentPayload


class MessageFailedPayload(Contract):
    request_id: UUID
    phone_number_id: str
    to: ContactRef
    error_code: int | None = Field(default=None, description="Meta's error code, e.g. 131047 or 130429.")
    http_status: int | None = None
    error_message: str
    attempts: int


class MessageFailed(Event):
    event_type: Literal["message.failed"] = "message.failed"
    schema_version: Literal[1] = 1
    payload: MessageFailedPayload


# --- router -> every replica that caches the tenant registry ----------------------


class RegistryChangedPayload(Contract):
    # Entities added later, as plain strings: "meta_app", "session".
    entity: Literal["organization", "number", "chatbot", "user"] | str
    entity_id: UUID
    # Also "tokens_revoked" (entity user): access tokens issued before `revoked_at` are refused;
    # "revoked" (entity session, entity_id the session id): that login's tokens are refused.
    change: Literal["created", "updated", "deleted"] | str
    phone_number_id: str | None = Field(default=None, description="Set when a number or its chatbot changed.")
    meta_app_id: str | None = Field(default=None, description="Set when a number or a Meta app changed (webhook secrets).")
    revoked_at: AwareDatetime | None = Field(default=None, description="Set with `tokens_revoked` and `revoked`.")


class RegistryChanged(Event):
    """Tells caches (router routes, gateway secrets, sender credentials) to drop stale entries."""

    event_type: Literal["registry.changed"] = "registry.changed"
    schema_version: Literal[1] = 1
    payload: RegistryChangedPayload


# --- any service -> dead letters -------------------------------------------------


class DeadLetterPayload(Contract):
    origin_topic: str
    consumer: str
    error: str
    attempts: int
    key: str | None = None
    original: str = Field(description="The original record's value, decoded as UTF-8 with replacement.")


class DeadLettered(Event):
    event_type: Literal["system.dead_lettered"] = "system.dead_lettered"
    schema_version: Literal[1] = 1
    payload: DeadLetterPayload


# --- sender -> flow engine, audit, operators ------------------------------------------


class MessageStatusPayload(Contract):
    """A status webhook of Meta's (routed by the router), joined by the sender to the request it sent."""

    request_id: UUID = Field(description="event_id of the outbound request the status belongs to.")
    phone_number_id: str
    to: ContactRef
    wamid: str
    conversation_id: UUID | None = None
    status: Literal["sent", "delivered", "read", "failed"] | str
    timestamp: int = Field(description="Unix seconds, as Meta sent it.")
    errors: list[dict[str, Any]] = Field(default_factory=list)


class MessageStatusUpdated(Event):
    """The delivery of a sent message moved forward (statuses are applied monotonically, once each)."""

    event_type: Literal["message.status_updated"] = "message.status_updated"
    schema_version: Literal[1] = 1
    payload: MessageStatusPayload


class SendingPausedPayload(Contract):
    phone_number_id: str
    error_code: int | None = Field(description="Meta's error code that paused the number, e.g. 131048.")
    error_message: str
    paused_until: AwareDatetime


class NumberSendingPaused(Event):
    """Alert: the sender stopped sending from a number (Meta's spam limit); an operator should look."""

    event_type: Literal["number.sending_paused"] = "number.sending_paused"
    schema_version: Literal[1] = 1
    payload: SendingPausedPayload


__all__ += [
    "MessageStatusPayload",
    "MessageStatusUpdated",
    "SendingPausedPayload",
    "NumberSendingPaused",
]
