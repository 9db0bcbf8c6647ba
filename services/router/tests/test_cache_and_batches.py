import asyncio
from dataclasses import replace
from uuid import uuid4

from pytake_plumbing.record_source import Partition

from pytake_contracts import DeadLettered, InboundMessageReceived, RegistryChanged, encode_event
from pytake_contracts.topics import REGISTRY_CHANGES, WEBHOOK_INBOUND
from pytake_devstack.fake_records import FakeRecordSource
from pytake_plumbing.backoff import Backoff
from pytake_plumbing.consumer import Consumer
from pytake_plumbing.settings import CommonSettings
from pytake_router.domain.model import KeywordRoute, NumberRoute, Unroutable, decide
from pytake_router.entrypoints import kafka
from pytake_router.service.routing import RouteCache, on_registry_changed

QUICK = Backoff(base_s=0.001, max_s=0.01)
SETTINGS = CommonSettings.model_validate({"PYTAKE_NAMESPACE": "unitrouter"})
INBOUND = SETTINGS.topic(WEBHOOK_INBOUND)

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


class Publisher:
    """The router's record producer: routed records come in batches, dead letters one by one."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, object, str]]] = []
        self.letters: list[DeadLettered] = []

    async def publish(self, spec, event, key) -> None:
        assert isinstance(event, DeadLettered)
        self.letters.append(event)

    async def publish_all(self, items) -> None:
        self.batches.append([(spec.name, event, key) for spec, event, key in items])


def message(phone: str) -> bytes:
    return encode_event(InboundMessageReceived(correlation_id=uuid4().hex, producer="gateway", payload={
        "phone_number_id": phone, "contact": {"wa_id": "15550001"},
        "message": {"wamid": f"w{uuid4().hex}", "type": "text", "timestamp": 1, "text": "hi"}}))


def routing(lookup, publisher: Publisher, source: FakeRecordSource) -> Consumer:  # type: ignore[no-untyped-def]
    subscription = replace(kafka.routing(RouteCache(lookup, ttl_s=60), publisher), backoff=QUICK)
    return Consumer(SETTINGS, subscription, dead_letters=publisher, source=source)


async def test_a_batch_is_routed_and_published_together_and_a_poison_record_dead_lettered() -> None:
    publisher, lookups, source = Publisher(), Lookups(), FakeRecordSource()
    source.put(INBOUND, message("100"), b"{not json", message("100"))
    consumer = routing(lookups, publisher, source)
    await consumer.start()
    await source.all_committed()
    await consumer.stop()
    (batch,) = publisher.batches
    assert [topic for topic, _, _ in batch] == ["pytake.messages.routed", "pytake.messages.routed"]
    (letter,) = publisher.letters
    assert letter.payload.error.startswith("undecodable") and letter.payload.original == "{not json"
    assert letter.payload.consumer == "router"
    assert lookups.calls == ["100"]  # the second message hit the warm cache
    assert source.committed == {Partition(INBOUND, 0): 3}


async def test_a_lookup_failing_in_an_outage_holds_the_batch_until_it_is_back() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.down = True
            self.failed = asyncio.Event()
            self.calls: list[str] = []

        async def __call__(self, phone_number_id: str) -> NumberRoute:
            self.calls.append(phone_number_id)
            if self.down:
                self.failed.set()
                raise ConnectionError("database down")
            return ROUTE

    publisher, lookup, source = Publisher(), Flaky(), FakeRecordSource()
    source.put(INBOUND, message("100"), message("200"))
    consumer = routing(lookup, publisher, source)
    await consumer.start()
    await asyncio.wait_for(lookup.failed.wait(), 5)
    assert publisher.batches == [] and source.committed == {}  # nothing goes ahead of the outage
    lookup.down = False
    await source.all_committed()
    await consumer.stop()
    (batch,) = publisher.batches  # the same batch, routed whole once the database is back
    assert [key.split(":")[0] for _, _, key in batch] == [str(ORG)] * 2
    assert lookup.calls[-2:] == ["100", "200"] and set(lookup.calls[:-2]) == {"100"}
    assert publisher.letters == []


async def test_a_registry_change_reaches_the_route_cache() -> None:
    lookups, source = Lookups(), FakeRecordSource()
    cache = RouteCache(lookups, ttl_s=3600)
    await cache.get("100")
    consumer = Consumer(SETTINGS, kafka.invalidation(cache), dead_letters=None, source=source)
    await consumer.start()
    source.put(SETTINGS.topic(REGISTRY_CHANGES), encode_event(changed("number", "100")))
    await asyncio.wait_for(_until(lambda: "100" not in cache._entries), 5)
    await consumer.stop()


async def _until(condition) -> None:  # type: ignore[no-untyped-def]
    while not condition():
        await asyncio.sleep(0.005)
