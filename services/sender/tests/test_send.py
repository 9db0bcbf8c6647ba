import dataclasses
from uuid import UUID, uuid4

import pytest

from pytake_contracts import (
    DeadLettered,
    MessageFailed,
    MessageSent,
    NumberSendingPaused,
    OutboundMessageRequested,
)
from pytake_plumbing.messaging import PermanentError
from pytake_sender.domain.meta_errors import AmbiguousSend, MetaApiError
from pytake_plumbing.backoff import Backoff
from pytake_sender.service.send import Sender, SendPolicy
from sender_fakes import (
    NO_WAIT,
    ORG,
    FakeClock,
    FakeCredentials,
    FakeDeliveries,
    FakeGraph,
    FreeGates,
    NoPairLimit,
    RecordingPauses,
    RecordingPublisher,
)


def _request(org: UUID = ORG, message: dict | None = None) -> OutboundMessageRequested:
    return OutboundMessageRequested(correlation_id="c", producer="flow-engine", organization_id=org, payload={
        "phone_number_id": "100", "to": {"wa_id": "15551234567"},
        "message": message or {"type": "text", "body": "Hello"}})


class World:
    def __init__(self, script: list[BaseException] | None = None, policy: SendPolicy = NO_WAIT) -> None:
        self.clock = FakeClock()
        self.graph = FakeGraph(script)
        self.credentials = FakeCredentials()
        self.deliveries = FakeDeliveries(self.clock)
        self.gates = FreeGates()
        self.pauses = RecordingPauses()
        self.publisher = RecordingPublisher()
        self.sender = Sender(self.graph, self.credentials, self.deliveries, self.gates, NoPairLimit(), self.pauses,
                             self.publisher, policy, sleep=self.clock.sleep, clock=self.clock)

    def of_type(self, cls: type) -> list:
        return [e for e in self.publisher.events if isinstance(e, cls)]


async def test_sent_once_even_when_redelivered() -> None:
    world = World()
    request = _request()
    assert await world.sender.handle(request) == "sent"
    assert await world.sender.handle(request) == "duplicate"
    assert len(world.graph.calls) == 1
    first, again = world.of_type(MessageSent)
    # The outcome is announced again, as the same event: readers deduplicate it by its id.
    assert first.payload.wamid == "wamid.1" and first.event_id == again.event_id
    assert world.deliveries.rows[request.event_id].status == "sent"
    assert world.graph.calls[0]["body"]["biz_opaque_callback_data"] == f"pytake:{request.event_id}"


async def test_throttling_is_retried_with_backoff() -> None:
    world = World([MetaApiError(429, 130429, "rate"), MetaApiError(400, 131056, "pair rate")])
    assert await world.sender.handle(_request()) == "sent"
    assert len(world.graph.calls) == 3
    assert len(world.clock.slept) == 2  # one backoff before each retry
    assert world.deliveries.rows[_only(world)].attempts == 3


@pytest.mark.parametrize("error", [MetaApiError(400, 4, "app throttle"), MetaApiError(400, 80007, "waba"),
                                   MetaApiError(503, None, "down"), MetaApiError(500, 131000, "oops")])
async def test_transient_errors_are_retried(error: MetaApiError) -> None:
    world = World([error])
    assert await world.sender.handle(_request()) == "sent"
    assert len(world.graph.calls) == 2


async def test_closed_window_fails_at_once_with_metas_code() -> None:
    world = World([MetaApiError(400, 131047, "re-engagement")])
    assert await world.sender.handle(_request()) == "failed"
    assert len(world.graph.calls) == 1
    (failed,) = world.of_type(MessageFailed)
    assert failed.payload.error_code == 131047 and failed.payload.attempts == 1
    assert world.pauses.paused == [] and world.of_type(DeadLettered) == []


async def test_spam_limit_pauses_the_number_and_alerts() -> None:
    world = World([MetaApiError(400, 131048, "spam rate limit hit")])
    assert await world.sender.handle(_request()) == "failed"
    (alert,) = world.of_type(NumberSendingPaused)
    assert alert.payload.error_code == 131048 and alert.payload.phone_number_id == "100"
    assert world.pauses.paused[0][:3] == (ORG, "100", 60.0)
    # The next request for that number is not sent at all.
    assert await world.sender.handle(_request()) == "failed"
    assert len(world.graph.calls) == 1
    assert [f.payload.error_code for f in world.of_type(MessageFailed)] == [131048, 131048]


async def test_invalid_parameter_is_dead_lettered_with_the_reason() -> None:
    world = World([MetaApiError(400, 100, "Invalid parameter")])
    request = _request()
    assert await world.sender.handle(request) == "failed"
    assert len(world.graph.calls) == 1
    (letter,) = world.of_type(DeadLettered)
    assert "Invalid parameter" in letter.payload.error and str(request.event_id) in letter.payload.original
    assert world.of_type(MessageFailed)[0].payload.error_code == 100


async def test_retries_stop_at_max_attempts() -> None:
    world = World([MetaApiError(500, None, "down")] * 5)
    assert await world.sender.handle(_request()) == "failed"
    assert len(world.graph.calls) == 3
    assert world.of_type(MessageFailed)[0].payload.attempts == 3


async def test_an_outage_is_retried_through_the_retry_window() -> None:
    # Meta down for about a minute: far more than max_attempts failures, all within the window.
    policy = dataclasses.replace(NO_WAIT, retry_window_s=120.0, backoff=Backoff(1.0, 10.0))
    world = World([MetaApiError(500, 2, "down")] * 12, policy)
    assert await world.sender.handle(_request()) == "sent"
    assert len(world.graph.calls) == 13 and world.of_type(MessageFailed) == []


async def test_retries_end_when_the_window_and_the_attempts_are_spent() -> None:
    policy = dataclasses.replace(NO_WAIT, retry_window_s=30.0, backoff=Backoff(10.0, 10.0))
    world = World([MetaApiError(500, 2, "down")] * 50, policy)
    assert await world.sender.handle(_request()) == "failed"
    (failed,) = world.of_type(MessageFailed)
    assert failed.payload.attempts == len(world.graph.calls) > NO_WAIT.max_attempts
    assert sum(world.clock.slept) >= 30.0 - 10.0  # the last retry began inside the window


async def test_number_of_another_tenant_is_not_sent() -> None:
    world = World()
    assert await world.sender.handle(_request(uuid4())) == "failed"
    assert world.graph.calls == []


async def test_request_id_of_another_tenant_is_refused() -> None:
    world = World()
    request = _request()
    await world.sender.handle(request)
    forged = request.model_copy(update={"organization_id": uuid4()})
    with pytest.raises(PermanentError):
        await world.sender.handle(forged)
    assert len(world.graph.calls) == 1


async def test_unanswered_send_resolved_by_its_status_is_not_sent_again() -> None:
    world = World([AmbiguousSend("read timeout")])
    request = _request()

    async def status_arrives(seconds: float) -> None:
        await FakeClock.sleep(world.clock, seconds)
        world.deliveries.join_status(ORG, request.event_id, "wamid.from-status", "sent")

    world.sender._sleep = status_arrives  # the status webhook comes in while the sender waits
    assert await world.sender.handle(request) == "sent"
    assert len(world.graph.calls) == 1
    (sent,) = world.of_type(MessageSent)
    assert sent.payload.wamid == "wamid.from-status"


async def test_unanswered_send_with_no_status_is_sent_again_after_the_wait() -> None:
    world = World([AmbiguousSend("read timeout")])
    assert await world.sender.handle(_request()) == "sent"
    assert len(world.graph.calls) == 2
    assert sum(world.clock.slept) >= NO_WAIT.uncertain_resolve_s


async def test_record_left_mid_send_waits_for_resolution_but_one_never_attempted_does_not() -> None:
    world = World()
    crashed, never_tried = _request(), _request()
    for request, attempts in ((crashed, 1), (never_tried, 0)):
        await world.deliveries.claim(_claim_of(request))
        world.deliveries.rows[request.event_id].attempts = attempts
    assert await world.sender.handle(never_tried) == "sent"
    assert world.clock.slept == []
    assert await world.sender.handle(crashed) == "sent"
    assert sum(world.clock.slept) >= NO_WAIT.uncertain_resolve_s
    assert len(world.graph.calls) == 2


async def test_each_message_kind_is_shaped_for_the_graph_api() -> None:
    world = World()
    messages = [
        {"type": "buttons", "body": "Pick", "buttons": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}]},
        {"type": "list", "body": "Menu", "button": "Open", "sections": [{"title": "S", "rows": [
            {"id": "r1", "title": "Row", "description": "d"}]}]},
        {"type": "template", "name": "hello_world", "language": "en_US"},
        {"type": "image", "link": "https://example.com/a.png", "caption": "look"},
    ]
    for message in messages:
        assert await world.sender.handle(_request(message=message)) == "sent"
    buttons, menu, template, image = (call["body"] for call in world.graph.calls)
    assert buttons["interactive"]["type"] == "button"
    assert [b["reply"]["id"] for b in buttons["interactive"]["action"]["buttons"]] == ["a", "b"]
    assert menu["interactive"]["action"]["sections"][0]["rows"][0]["id"] == "r1"
    assert template["template"] == {"name": "hello_world", "language": {"code": "en_US"}}
    assert image["image"] == {"link": "https://example.com/a.png", "caption": "look"}


def _only(world: World) -> UUID:
    (request_id,) = world.deliveries.rows
    return request_id


def _claim_of(request: OutboundMessageRequested):  # type: ignore[no-untyped-def]
    from pytake_sender.adapters.db.repository import ClaimRequest

    return ClaimRequest(ORG, request.event_id, request.payload.phone_number_id, request.payload.to.key,
                        request.payload.to.model_dump_json(), None)
