from types import SimpleNamespace
from uuid import uuid4

import pytest

from pytake_plumbing.backoff import Backoff
from pytake_contracts import InboundMessageReceived, RegistryChanged, encode_event
from pytake_router.domain.model import KeywordRoute, NumberRoute, Unroutable, decide
from pytake_router.entrypoints.kafka import BatchRouter
from pytake_router.service.routing import RouteCache, on_registry_changed

QUICK = Backoff(max_s=0.01)

ORG = uuid4()
ROUTE = NumberRoute(ORG, uuid4(), True, uuid4(), uuid4())


class Lookups:
    def __init__(self, route: NumberRoute | None = ROUTE) -> None:
        self.route = route
        self.calls: list[str] = []

    async def __call__(self, phone_number_id: str) -> NumberRoute | None:
        self.calls.append(phone_number_id)
        return self.route


def changed(entity: str, phone_number_id: str | None = None) -> RegistryChanged:
    return RegistryChanged(correlation_id="c", producer="router", organization_id=ORG, payload={
        "entity": entity, "entity_id": uuid4(), "change": "updated", "phone_number_id": phone_number_id})


async def test_a_number_change_drops_only_that_route() -> None:
    lookups = Lookups()
    cache = RouteCache(lookups, ttl_s=3600)
    for phone in ("100", "200", "100", "200"):
        await cache.get(phone)
    assert lookups.calls == ["100", "200"]
    on_registry_changed(changed("number", "100"), cache)
    await cache.get("100")
    await cache.get("200")
    assert lookups.calls == ["100", "200", "100"]


async def test_an_organization_change_drops_every_route_and_a_user_change_none() -> None:
    lookups = Lookups()
    cache = RouteCache(lookups, ttl_s=3600)
    await cache.get("100")
    on_registry_changed(changed("user"), cache)
    await cache.get("100")
    assert lookups.calls == ["100"]
    on_registry_changed(changed("organization"), cache)
    await cache.get("100")
    assert lookups.calls == ["100", "100"]


async def test_a_lookup_overtaken_by_an_invalidation_is_not_cached() -> None:
    cache: RouteCache

    async def slow_lookup(phone_number_id: str) -> NumberRoute:
        cache.invalidate(phone_number_id)  # the registry changed while we were reading it
        return ROUTE

    cache = RouteCache(slow_lookup, ttl_s=3600)
    await cache.get("100")
    assert cache._entries == {}


def test_start_keywords_pick_their_chatbot() -> None:
    sales = KeywordRoute(frozenset({"order now"}), uuid4(), uuid4())
    route = NumberRoute(ORG, uuid4(), True, uuid4(), uuid4(), (sales,))
    chosen = decide(route, "  Order   NOW ")
    assert isinstance(chosen, NumberRoute) and chosen.chatbot_id == sales.chatbot_id
    assert decide(route, "hello") == route
    no_default = NumberRoute(ORG, uuid4(), True, None, None, (sales,))
    assert decide(no_default, "hello") is Unroutable.NO_CHATBOT
    assert isinstance(decide(no_default, "order now"), NumberRoute)
    assert decide(NumberRoute(ORG, uuid4(), False, None, None, (sales,)), "order now") is Unroutable.INACTIVE_NUMBER


class BatchPublisher:
    def __init__(self) -> None:
        self.batches: list[list[tuple[str, object, str]]] = []

    async def publish(self, spec, event, key) -> None:
        await self.publish_all([(spec, event, key)])

    async def publish_all(self, items) -> None:
        self.batches.append([(spec.name, event, key) for spec, event, key in items])


def record(value: bytes, offset: int) -> SimpleNamespace:
    return SimpleNamespace(value=value, topic="t.pytake.webhook.inbound", partition=0, offset=offset, key=b"k",
                           headers=[("correlation_id", b"poison-corr")])


def message(phone: str) -> bytes:
    return encode_event(InboundMessageReceived(correlation_id=uuid4().hex, producer="gateway", payload={
        "phone_number_id": phone, "contact": {"wa_id": "15550001"},
        "message": {"wamid": f"w{uuid4().hex}", "type": "text", "timestamp": 1, "text": "hi"}}))


async def test_a_batch_is_routed_and_published_together_with_its_dead_letters() -> None:
    publisher = BatchPublisher()
    lookups = Lookups()
    router = BatchRouter(RouteCache(lookups, ttl_s=60), publisher, max_attempts=3, backoff=QUICK)
    await router.handle((record(message("100"), 1), record(b"{not json", 2), record(message("100"), 3)))
    (batch,) = publisher.batches
    assert [topic for topic, _, _ in batch] == ["pytake.messages.routed", "pytake.deadletter", "pytake.messages.routed"]
    letter = batch[1][1]
    assert letter.payload.error.startswith("undecodable") and letter.correlation_id == "poison-corr"
    assert lookups.calls == ["100"]  # the second message hit the warm cache


async def test_a_failing_lookup_fails_the_batch_so_it_is_redelivered() -> None:
    class Down:
        async def __call__(self, phone_number_id: str) -> NumberRoute:
            raise ConnectionError("database down")

    publisher = BatchPublisher()
    router = BatchRouter(RouteCache(Down(), ttl_s=60), publisher, max_attempts=3, backoff=QUICK)
    with pytest.raises(ConnectionError):
        await router.handle((record(message("100"), 1),))
    assert publisher.batches == []
