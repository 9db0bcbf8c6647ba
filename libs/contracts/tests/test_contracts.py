import json

import pytest
from pydantic import ValidationError

from pytake_contracts import (
    ContactRef,
    Event,
    InboundMessageReceived,
    UnknownEventError,
    decode_event,
    encode_event,
)
from pytake_contracts.topics import CATALOG


def _received(**contact: str) -> InboundMessageReceived:
    return InboundMessageReceived(
        correlation_id="c-1",
        producer="gateway",
        payload={
            "phone_number_id": "100",
            "contact": contact,
            "message": {"wamid": "wamid.1", "type": "text", "timestamp": 1700000000, "text": "hi"},
        },
    )


def test_event_round_trips_through_json() -> None:
    event = _received(wa_id="15551234567")
    decoded = decode_event(encode_event(event))
    assert isinstance(decoded, InboundMessageReceived)
    assert decoded == event


def test_readers_ignore_unknown_fields() -> None:
    document = json.loads(encode_event(_received(wa_id="1")))
    document["added_later"] = {"x": 1}
    document["payload"]["message"]["also_new"] = True
    decoded = decode_event(json.dumps(document))
    assert decoded.payload.message.text == "hi"


def test_unknown_event_type_is_refused() -> None:
    document = json.loads(encode_event(_received(wa_id="1")))
    document["schema_version"] = 99
    with pytest.raises(UnknownEventError):
        decode_event(json.dumps(document))


def test_contact_with_only_business_scoped_id_has_a_key() -> None:
    assert ContactRef(user_id="US.13491208655302741918").key == "u:US.13491208655302741918"
    assert ContactRef(wa_id="15551234567").key == "p:15551234567"


def test_contact_needs_some_identity() -> None:
    with pytest.raises(ValidationError):
        ContactRef(profile_name="nobody")


def test_caused_event_keeps_correlation_and_tenant() -> None:
    cause = _received(wa_id="1")
    follow = cause.caused(InboundMessageReceived, producer="router", payload=cause.payload)
    assert follow.correlation_id == cause.correlation_id
    assert follow.causation_id == str(cause.event_id)
    assert follow.event_id != cause.event_id


def test_catalog_lists_every_event_once() -> None:
    listed = [event for spec in CATALOG for event in spec.events]
    assert len(listed) == len(set(listed))
    assert set(listed) == set(Event.registry.values())
    assert len({spec.name for spec in CATALOG}) == len(CATALOG)
