"""Request and response schemas of the audit's query API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

from pytake_plumbing.bounds import MAX_PAGE_SIZE, NO_NUL, JsonInt

DEFAULT_WINDOW = timedelta(days=30)

# An instant is an RFC 3339 date-time with its offset, as the schema says: not the Unix time that
# Pydantic would also read from a number or a numeric string ("0.5").
_Rfc3339 = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")]
_INSTANT_INPUT = TypeAdapter(Annotated[Annotated[datetime, Strict()] | _Rfc3339, Field(union_mode="left_to_right")])
Instant = Annotated[AwareDatetime, BeforeValidator(_INSTANT_INPUT.validate_python)]


class TimeRange(BaseModel):
    """`since` inclusive, `until` exclusive; by default the last 30 days."""

    model_config = ConfigDict(extra="forbid")

    since: Instant | None = None
    until: Instant | None = None

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.since and self.until and self.since >= self.until:
            raise ValueError("since must be before until")
        return self

    def bounds(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        until = self.until or now or datetime.now(UTC)
        since = self.since or until - DEFAULT_WINDOW
        return since, until


class MessageSearch(TimeRange):
    contact: str | None = Field(default=None, min_length=1, max_length=200, pattern=NO_NUL,
                                description="wa_id, business-scoped user id, or contact key (p:…/u:…).")
    direction: Literal["in", "out"] | None = None
    type: str | None = Field(default=None, min_length=1, max_length=40, pattern=NO_NUL,
                             description="Message type: text, interactive, image, buttons, template, ...")
    limit: int = Field(default=50, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(default=0, ge=0, le=100_000)


class FunnelQuery(TimeRange):
    flow_id: UUID


class TimelineEntry(BaseModel):
    event_id: str
    event_type: str
    occurred_at: datetime
    producer: str
    correlation_id: str
    direction: str | None = None
    message_type: str | None = None
    contact_key: str | None = None
    wamid: str | None = None
    payload: dict[str, Any]


class ConversationTimeline(BaseModel):
    conversation_id: UUID
    entries: list[TimelineEntry]


class MessageItem(BaseModel):
    event_id: str = Field(description="event_id of the routed inbound message or of the outbound request.")
    occurred_at: datetime
    direction: Literal["in", "out"]
    type: str | None
    contact_key: str | None
    conversation_id: str | None = None
    wamid: str | None = None
    text: str | None = None
    status: str | None = Field(default=None, description="Outbound only: requested, sent, delivered, read, "
                                                         "failed, or send_failed (the sender gave up).")


class MessagePage(BaseModel):
    items: list[MessageItem]
    total: int
    limit: int
    offset: int


class DeliveryStatus(BaseModel):
    wamid: str
    status: Literal["sent", "delivered", "read", "failed"]
    at: dict[str, datetime] = Field(description="When each status was first seen.")
    request_id: str | None = None
    conversation_id: str | None = None
    contact_key: str | None = None
    errors: list[dict[str, Any]] = Field(default_factory=list)


class DayCount(BaseModel):
    day: str
    inbound: int
    outbound: int


class MessagesPerDay(BaseModel):
    since: datetime
    until: datetime
    days: list[DayCount]


class DeliveryRates(BaseModel):
    since: datetime
    until: datetime
    sent: int = Field(description="Messages Meta accepted (they have a wamid), first seen in the range.")
    delivered: int = Field(description="Of those, delivered (or read, which implies delivered).")
    read: int
    failed: int
    delivery_rate: float
    read_rate: float


class FunnelNode(BaseModel):
    node_id: str
    reached: int = Field(description="Conversations that reached this node.")
    stopped: int = Field(description="Conversations whose latest node is this one.")
    stopped_by_status: dict[str, int]


class Funnel(BaseModel):
    flow_id: UUID
    since: datetime
    until: datetime
    conversations: int
    nodes: list[FunnelNode]


class RetentionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: JsonInt = Field(ge=1, le=3650)


class RetentionResponse(BaseModel):
    organization_id: UUID
    days: int
    default: bool = Field(description="True while the organization has not chosen its own retention.")
