import asyncio
from uuid import uuid4

from pytake_contracts import MessageStatusUpdated, StatusRouted
from pytake_sender.adapters.batching import Coalescer
from pytake_sender.adapters.db.repository import ClaimRequest
from pytake_sender.service.statuses import join_statuses
from sender_fakes import ORG, FakeDeliveries, RecordingPublisher


def _status(request_id, wamid: str, status: str, org=ORG) -> StatusRouted:  # type: ignore[no-untyped-def]
    raw = {"id": wamid, "status": status}
    if request_id:
        raw["biz_opaque_callback_data"] = f"pytake:{request_id}"
    return StatusRouted(correlation_id="c", producer="router", organization_id=org, payload={
        "phone_number_id": "100", "wamid": wamid, "status": status, "timestamp": 1, "organization_id": org,
        "recipient": {"wa_id": "15551234567"}, "raw": raw})


async def _sent_request(deliveries: FakeDeliveries, wamid: str | None):  # type: ignore[no-untyped-def]
    request_id = uuid4()
    await deliveries.claim(ClaimRequest(ORG, request_id, "100", "p:15551234567", '{"wa_id":"15551234567"}', None))
    row = deliveries.rows[request_id]
    if wamid:
        row.status, row.wamid = "sent", wamid
    return request_id


async def test_statuses_apply_once_and_in_order() -> None:
    deliveries, publisher = FakeDeliveries(), RecordingPublisher()
    request_id = await _sent_request(deliveries, "wamid.A")
    results = [(await join_statuses([_status(None, "wamid.A", s)], deliveries, publisher))[0]
               for s in ("delivered", "sent", "delivered", "read")]
    assert results == ["joined", "unchanged", "unchanged", "joined"]
    updates = [e for e in publisher.events if isinstance(e, MessageStatusUpdated)]
    assert [u.payload.status for u in updates] == ["delivered", "read"]
    assert all(u.payload.request_id == request_id for u in updates)


async def test_status_resolves_an_unanswered_send_by_its_callback_id() -> None:
    deliveries, publisher = FakeDeliveries(), RecordingPublisher()
    request_id = await _sent_request(deliveries, None)
    assert await join_statuses([_status(request_id, "wamid.B", "sent")], deliveries, publisher) == ["joined"]
    assert deliveries.rows[request_id].status == "sent" and deliveries.rows[request_id].wamid == "wamid.B"


async def test_status_of_another_tenant_joins_nothing() -> None:
    deliveries, publisher = FakeDeliveries(), RecordingPublisher()
    await _sent_request(deliveries, "wamid.C")
    assert await join_statuses([_status(None, "wamid.C", "read", org=uuid4())], deliveries, publisher) == ["unknown"]
    assert publisher.events == []


async def test_a_batch_joins_in_order_and_publishes_only_what_moved_forward() -> None:
    deliveries, publisher = FakeDeliveries(), RecordingPublisher()
    first = await _sent_request(deliveries, "wamid.D")
    second = await _sent_request(deliveries, None)
    batch = [_status(None, "wamid.D", "read"), _status(second, "wamid.E", "sent"), _status(None, "wamid.D", "delivered"),
             _status(None, "wamid.D", "deleted"), _status(None, "wamid.unknown", "sent"),
             _status(second, "wamid.E", "delivered")]
    assert await join_statuses(batch, deliveries, publisher) == [
        "joined", "joined", "unchanged", "unchanged", "unknown", "joined"]
    updates = [(u.payload.request_id, u.payload.status) for u in publisher.events]
    assert updates == [(first, "read"), (second, "sent"), (second, "delivered")]
    assert deliveries.rows[second].wamid == "wamid.E"


async def test_coalescer_batches_calls_made_during_a_flush() -> None:
    batches: list[list[int]] = []

    async def flush(items):  # type: ignore[no-untyped-def]
        batches.append(list(items))
        await asyncio.sleep(0.01)
        return [item * 2 for item in items]

    coalescer: Coalescer[int, int] = Coalescer(flush)
    assert await asyncio.gather(*(coalescer.submit(i) for i in range(5))) == [0, 2, 4, 6, 8]
    assert sum(len(b) for b in batches) == 5 and len(batches) <= 2
