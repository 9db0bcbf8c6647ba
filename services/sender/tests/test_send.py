from uuid import UUID, uuid4

from pytake_contracts import MessageFailed, MessageSent, OutboundMessageRequested
from pytake_sender.domain.meta_errors import MetaApiError
from pytake_sender.service.send import RetryPolicy, send_requested

ORG = uuid4()
NO_WAIT = RetryPolicy(max_attempts=3, base_s=0.0, max_s=0.0)


class FakeGraph:
    def __init__(self, failures: list[MetaApiError]) -> None:
        self.failures = failures
        self.calls: list[tuple[str, str, str]] = []

    async def send_text(self, phone_number_id, access_token, to, body) -> str:
        self.calls.append((phone_number_id, access_token, body))
        if self.failures:
            raise self.failures.pop(0)
        return f"wamid.{len(self.calls)}"


class FakeCredentials:
    async def access_token(self, organization_id: UUID, phone_number_id: str) -> str | None:
        return "token" if organization_id == ORG else None


class FakeDeliveries:
    def __init__(self) -> None:
        self.rows: dict[UUID, dict] = {}

    async def claim(self, organization_id, request_id, phone_number_id) -> str:
        self.rows.setdefault(request_id, {"status": "sending"})
        return self.rows[request_id]["status"]

    async def finish(self, organization_id, request_id, **fields) -> None:
        self.rows[request_id].update(fields)


class RecordingPublisher:
    def __init__(self) -> None:
        self.events: list = []

    async def publish(self, spec, event, key) -> None:
        self.events.append(event)


def _request(org: UUID = ORG) -> OutboundMessageRequested:
    return OutboundMessageRequested(correlation_id="c", producer="flow-engine", organization_id=org, payload={
        "phone_number_id": "100", "to": {"wa_id": "15551234567"}, "message": {"type": "text", "body": "Hello"}})


async def test_sent_once_even_when_redelivered() -> None:
    graph, deliveries, publisher = FakeGraph([]), FakeDeliveries(), RecordingPublisher()
    request = _request()
    assert await send_requested(request, graph, FakeCredentials(), deliveries, publisher, NO_WAIT) == "sent"
    assert await send_requested(request, graph, FakeCredentials(), deliveries, publisher, NO_WAIT) == "duplicate"
    assert len(graph.calls) == 1
    (sent,) = publisher.events
    assert isinstance(sent, MessageSent) and sent.payload.wamid == "wamid.1"
    assert deliveries.rows[request.event_id]["status"] == "sent"


async def test_throttling_is_retried() -> None:
    graph = FakeGraph([MetaApiError(429, 130429, "rate"), MetaApiError(400, 131056, "pair rate")])
    publisher = RecordingPublisher()
    result = await send_requested(_request(), graph, FakeCredentials(), FakeDeliveries(), publisher, NO_WAIT)
    assert result == "sent" and len(graph.calls) == 3


async def test_closed_window_and_spam_limit_are_not_retried() -> None:
    for code in (131047, 131048):
        graph, publisher = FakeGraph([MetaApiError(400, code, "no")]), RecordingPublisher()
        assert await send_requested(_request(), graph, FakeCredentials(), FakeDeliveries(), publisher,
                                    NO_WAIT) == "failed"
        assert len(graph.calls) == 1
        (failed,) = publisher.events
        assert isinstance(failed, MessageFailed) and failed.payload.error_code == code


async def test_retries_stop_at_max_attempts() -> None:
    graph = FakeGraph([MetaApiError(500, None, "down")] * 5)
    publisher = RecordingPublisher()
    assert await send_requested(_request(), graph, FakeCredentials(), FakeDeliveries(), publisher, NO_WAIT) == "failed"
    assert len(graph.calls) == 3
    assert publisher.events[0].payload.attempts == 3


async def test_number_of_another_tenant_is_not_sent() -> None:
    graph, publisher = FakeGraph([]), RecordingPublisher()
    assert await send_requested(_request(uuid4()), graph, FakeCredentials(), FakeDeliveries(), publisher,
                                NO_WAIT) == "failed"
    assert graph.calls == []
