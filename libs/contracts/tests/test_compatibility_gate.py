"""The gate that keeps PyTake's events readable across releases."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

import pytest

from pytake_contracts import Contract, Event
from pytake_contracts.compat import breaking_changes
from pytake_contracts.docs import check


class Contact(Contract):
    wa_id: str | None = None
    user_id: str | None = None


class Payload(Contract):
    wamid: str
    count: int
    contact: Contact
    note: str | None = None
    kind: Literal["text", "image"]


class Before(Contract):
    event_id: UUID
    payload: Payload


def schema_of(payload_cls: type[Contract]) -> dict:
    class Envelope(Contract):
        event_id: UUID
        payload: payload_cls  # type: ignore[valid-type]

    return Envelope.model_json_schema()


BEFORE = schema_of(Payload)


class Removed(Contract):
    wamid: str
    contact: Contact
    note: str | None = None
    kind: Literal["text", "image"]


class Retyped(Contract):
    wamid: str
    count: str
    contact: Contact
    note: str | None = None
    kind: Literal["text", "image"]


class NewRequired(Payload):
    channel: str


class MadeRequired(Contract):
    wamid: str
    count: int
    contact: Contact
    note: str
    kind: Literal["text", "image"]


class NestedRetyped(Contract):
    class Contact(Contract):
        wa_id: int | None = None
        user_id: str | None = None

    wamid: str
    count: int
    contact: Contact
    note: str | None = None
    kind: Literal["text", "image"]


class NarrowedLiteral(Contract):
    wamid: str
    count: int
    contact: Contact
    note: str | None = None
    kind: Literal["text"]


class NewOptional(Payload):
    channel: str | None = None
    tags: list[str] = []


@pytest.mark.parametrize("changed, expected", [
    (Removed, "$.payload.count: field removed"),
    (Retyped, "$.payload.count: type changed from integer to string"),
    (NewRequired, "$.payload.channel: new required field"),
    (MadeRequired, "$.payload.note: optional field made required"),
    (NestedRetyped, "$.payload.contact.wa_id: type string no longer accepted"),
    (NarrowedLiteral, "$.payload.kind: enum value 'image' removed"),
])
def test_breaking_changes_are_rejected(changed: type[Contract], expected: str) -> None:
    problems = breaking_changes(BEFORE, schema_of(changed))
    assert problems, f"{changed.__name__} should be refused"
    assert any(p.startswith(expected) or expected in p for p in problems), problems


def test_new_optional_field_is_accepted() -> None:
    assert breaking_changes(BEFORE, schema_of(NewOptional)) == []


def test_identical_schema_is_accepted() -> None:
    assert breaking_changes(BEFORE, schema_of(Payload)) == []


def test_a_type_change_is_a_new_version_not_an_edit() -> None:
    """A breaking change publishes v2; v1 keeps its own schema and stays readable."""

    class PayloadV2(Contract):
        wamid: str
        count: str

    class SampleV1(Event):
        event_type: Literal["sample.gate_test"] = "sample.gate_test"
        schema_version: Literal[1] = 1
        payload: Payload

    class SampleV2(Event):
        event_type: Literal["sample.gate_test"] = "sample.gate_test"
        schema_version: Literal[2] = 2
        payload: PayloadV2

    try:
        assert Event.registry[("sample.gate_test", 1)] is SampleV1
        assert Event.registry[("sample.gate_test", 2)] is SampleV2
    finally:
        Event.registry.pop(("sample.gate_test", 1))
        Event.registry.pop(("sample.gate_test", 2))


def test_committed_schemas_and_asyncapi_match_the_code() -> None:
    findings = check()
    assert findings == [], "\n".join(f"{f.event}: {f.problem}" for f in findings)
