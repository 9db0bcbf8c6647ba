"""The envelope every PyTake event travels in.

Readers ignore fields they do not know, so a producer may add optional fields
without breaking older consumers. A breaking change is a new schema_version.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


EventT = TypeVar("EventT", bound="Event")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Contract(BaseModel):
    """Base of every payload model: tolerant reader, immutable value."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Event(Contract):
    """Fields shared by every event; subclasses add `event_type`, `schema_version`, `payload`."""

    registry: ClassVar[dict[tuple[str, int], type[Event]]] = {}

    event_id: UUID = Field(default_factory=uuid4)
    event_type: str
    schema_version: int
    occurred_at: AwareDatetime = Field(default_factory=utc_now)
    organization_id: UUID | None = Field(
        default=None, description="The tenant; absent only before the router has resolved it."
    )
    correlation_id: str = Field(description="Shared by every event caused by one inbound webhook.")
    causation_id: str | None = Field(default=None, description="event_id of the event that caused this one.")
    producer: str = Field(description="The service that produced the event.")
    traceparent: str | None = Field(default=None, description="W3C trace context of the producing span.")
    tracestate: str | None = None
    payload: Any

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        event_type = cls.model_fields["event_type"].default
        version = cls.model_fields["schema_version"].default
        if isinstance(event_type, str) and isinstance(version, int):
            Event.registry[(event_type, version)] = cls

    def caused(self, cls: type[EventT], *, producer: str, payload: Any, **fields: Any) -> EventT:
        """A follow-up event that keeps this event's correlation, tenant and trace."""
        fields.setdefault("organization_id", self.organization_id)
        return cls(
            correlation_id=self.correlation_id,
            causation_id=str(self.event_id),
            producer=producer,
            traceparent=self.traceparent,
            tracestate=self.tracestate,
            payload=payload,
            **fields,
        )


class UnknownEventError(ValueError):
    """Raised for an event type or version this release of the contracts does not know."""


class _Header(Contract):
    event_type: str
    schema_version: int


def decode_event(raw: bytes | str) -> Event:
    """Decode any registered event from its JSON form."""
    header = _Header.model_validate_json(raw)
    cls = Event.registry.get((header.event_type, header.schema_version))
    if cls is None:
        raise UnknownEventError(f"unknown event {header.event_type} v{header.schema_version}")
    return cls.model_validate_json(raw)


def encode_event(event: Event) -> bytes:
    return event.model_dump_json().encode()
