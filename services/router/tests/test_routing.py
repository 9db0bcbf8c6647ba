from uuid import uuid4

import pytest

from pytake_contracts import InboundMessageReceived, InboundMessageRouted, MessageUnroutable, StatusReceived, StatusRouted
from pytake_contracts.topics import MESSAGES_ROUTED, MESSAGES_UNROUTABLE, STATUSES_ROUTED
from pytake_router.domain.model import NumberRoute, Unroutable, decide
from pytake_router.service.routing import RouteCache, route_event

ORG = uuid4()
ROUTE = NumberRoute(organization_id=ORG, number_id=uuid4(), active=True, chatbot_id=uuid4(), flow_id=uuid4())


class RecordingPublisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, object, str]] = []

    async def publish(self, spec, event, key) -> None:
        self.sent.append((spec.name, event, key))


def _message(phone_number_id: str = "100") -> InboundMessageReceived:
    return InboundMessageReceived(correlation_id="c", producer="gateway", payload={
        "phone_number_id": phone_number_id, "contact": {"user_id": "US.1"},
        "message": {"wamid": "w1", "type": "text", "timestamp": 1, "text": "hi"}})


def _status() -> StatusReceived:
    return StatusReceived(correlation_id="c", producer="gateway", payload={
        "phone_number_id": "100", "wamid": "wamid.out", "status": "read", "timestamp": 1,
        "recipient": {"wa_id": "15551234567"}})


def test_decide() -> None:
    assert decide(None) is Unroutable.UNKNOWN_NUMBER
    assert decide(NumberRoute(ORG, uuid4(), False, uuid4(), uuid4())) is Unroutable.INACTIVE_NUMBER
    assert decide(NumberRoute(ORG, uuid4(), True, None, None)) is Unroutable.NO_CHATBOT
    assert decide(ROUTE) is ROUTE


async def test_known_number_is_routed_with_tenant_and_conversation_key() -> None:
    publisher = RecordingPublisher()
    cache = RouteCache(lambda _: _async(ROUTE), ttl_s=60)
    await route_event(_message(), cache, publisher)
    ((topic, event, key),) = publisher.sent
    assert topic == MESSAGES_ROUTED.name
    assert isinstance(event, InboundMessageRouted)
    assert event.organization_id == ORG and event.payload.route.flow_id == ROUTE.flow_id
    assert key == f"{ORG}:u:US.1"


async def test_unknown_number_goes_to_unroutable_with_reason() -> None:
    publisher = RecordingPublisher()
    await route_event(_message("999"), RouteCache(lambda _: _async(None), ttl_s=60), publisher)
    ((topic, event, _),) = publisher.sent
    assert topic == MESSAGES_UNROUTABLE.name
    assert isinstance(event, MessageUnroutable) and event.payload.reason == "unknown_number"


async def test_status_is_routed_on_its_own_topic() -> None:
    publisher = RecordingPublisher()
    await route_event(_status(), RouteCache(lambda _: _async(ROUTE), ttl_s=60), publisher)
    ((topic, event, key),) = publisher.sent
    assert topic == STATUSES_ROUTED.name and isinstance(event, StatusRouted)
    assert key == f"{ORG}:wamid.out"


@pytest.mark.parametrize("elapsed, lookups", [(10.0, 1), (61.0, 2)])
async def test_cache_expires_after_ttl(elapsed: float, lookups: int) -> None:
    calls: list[str] = []
    now = [0.0]

    async def lookup(phone_number_id: str):
        calls.append(phone_number_id)
        return ROUTE

    cache = RouteCache(lookup, ttl_s=60, clock=lambda: now[0])
    await cache.get("100")
    now[0] = elapsed
    await cache.get("100")
    assert len(calls) == lookups


async def _async(value):
    return value


BOUND = NumberRoute(organization_id=ORG, number_id=uuid4(), active=True, chatbot_id=uuid4(), flow_id=uuid4(),
                    meta_app_id="700")


def test_an_event_signed_by_another_app_than_the_numbers_is_not_routed() -> None:
    assert decide(BOUND, signed_by="700") is BOUND
    assert decide(BOUND, signed_by="701") is Unroutable.NOT_BOUND_TO_APP
    # A demo-mode gateway (one secret of its own, no apps) does not say which app signed.
    assert decide(BOUND, signed_by=None) is BOUND


@pytest.mark.parametrize("make", [_message, _status])
async def test_a_message_or_status_for_a_number_of_another_app_goes_to_unroutable(make) -> None:
    publisher = RecordingPublisher()
    event = make()
    foreign = event.model_copy(update={"payload": event.payload.model_copy(update={"meta_app_id": "666"})})
    await route_event(foreign, RouteCache(lambda _: _async(BOUND), ttl_s=60), publisher)
    ((topic, out, _),) = publisher.sent
    assert topic == MESSAGES_UNROUTABLE.name
    assert isinstance(out, MessageUnroutable) and out.payload.reason == "number_not_bound_to_app"
    assert out.organization_id is None  # nothing of the number's organization is attached to it
