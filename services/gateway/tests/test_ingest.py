"""The ingest use case with fakes: the order of seen-marks and publishing, never losing a message."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Sequence

import pytest

from pytake_devstack import meta_payloads
from pytake_devstack import meta_samples as meta
from pytake_gateway.adapters.memory_dedup import InMemoryDedupStore
from pytake_gateway.service.ingest import (
    AppCredentials,
    Claim,
    DedupUnavailable,
    PublishStillPending,
    StoreUnavailable,
    UnknownApp,
    WebhookIngestor,
)

SECRET = "s3cret"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Secrets:
    async def credentials(self, meta_app_id: str | None) -> AppCredentials | None:
        return AppCredentials([SECRET], ["tok"]) if meta_app_id == "app1" else None


class Sink:
    def __init__(self) -> None:
        self.published: list = []
        self.failing = False

    async def publish_all(self, items: Sequence) -> None:
        if self.failing:
            raise ConnectionError("kafka down")
        self.published.extend(event for _, event, _ in items)


class SlowSink(Sink):
    """Kafka away: the deadline passes while the producer still holds the records."""

    def __init__(self) -> None:
        super().__init__()
        self.completion: asyncio.Future[None] | None = None

    async def publish_all(self, items: Sequence) -> None:
        if self.completion is None:
            self.completion = asyncio.get_running_loop().create_future()
            raise PublishStillPending(self.completion)
        await super().publish_all(items)


class DownDedup:
    async def claim(self, keys: Sequence[str]) -> Claim:
        raise DedupUnavailable("postgres down")

    async def confirm(self, keys: Collection[str]) -> None:
        raise DedupUnavailable("postgres down")

    async def release(self, keys: Collection[str]) -> None:
        raise DedupUnavailable("postgres down")

    async def renew(self, keys: Collection[str]) -> None:
        raise DedupUnavailable("postgres down")


def _body() -> bytes:
    return meta.encode(meta.webhook(meta.value(contacts=[meta.contact()], messages=[meta.messages()["text"]])))


async def _ingest(ingestor: WebhookIngestor, body: bytes):
    return await ingestor.ingest("app1", body, meta_payloads.sign(body, SECRET))


async def test_a_failed_publish_leaves_no_seen_mark_so_the_retry_is_published() -> None:
    sink, dedup = Sink(), InMemoryDedupStore(Clock())
    ingestor = WebhookIngestor(Secrets(), dedup, sink)
    body = _body()
    sink.failing = True
    with pytest.raises(StoreUnavailable):
        await _ingest(ingestor, body)
    sink.failing = False
    retried = await _ingest(ingestor, body)
    assert len(retried.published) == 1 and len(sink.published) == 1
    again = await _ingest(ingestor, body)
    assert again.published == [] and len(again.duplicates) == 1


async def test_a_delivery_in_flight_elsewhere_is_not_called_a_duplicate() -> None:
    clock = Clock()
    dedup = InMemoryDedupStore(clock, lease_s=30)
    ingestor = WebhookIngestor(Secrets(), dedup, Sink())
    body = _body()
    key = next(iter((await dedup.claim([f"m:{_wamid(body)}"])).claimed))  # another replica claimed it
    outcome = await _ingest(ingestor, body)
    assert outcome.published == [] and outcome.in_flight == [key] and outcome.duplicates == []
    # That replica died before publishing: once its lease has run out, a retry takes the claim over.
    clock.now += 31
    taken_over = await _ingest(ingestor, body)
    assert len(taken_over.published) == 1


async def test_with_the_dedup_store_down_the_webhook_is_still_published() -> None:
    sink = Sink()
    outcome = await _ingest(WebhookIngestor(Secrets(), DownDedup(), sink), _body())
    assert len(outcome.published) == 1 and not outcome.deduplicated and len(sink.published) == 1


async def test_the_same_message_twice_in_one_post_is_published_once() -> None:
    text = meta.messages()["text"]
    body = meta.encode(meta.webhook(meta.value(contacts=[meta.contact()], messages=[text, text])))
    sink = Sink()
    outcome = await _ingest(WebhookIngestor(Secrets(), InMemoryDedupStore(Clock()), sink), body)
    assert len(sink.published) == 1 and outcome.duplicates == [f"m:{text['id']}"]


async def test_an_unknown_app_is_refused_before_anything_else() -> None:
    with pytest.raises(UnknownApp):
        await WebhookIngestor(Secrets(), InMemoryDedupStore(Clock()), Sink()).ingest("other", b"{}", None)


def _wamid(body: bytes) -> str:
    return json.loads(body)["entry"][0]["changes"][0]["value"]["messages"][0]["id"]


@pytest.mark.parametrize("landed", [True, False])
async def test_a_publish_that_outlives_its_request_is_settled_when_kafka_answers(landed: bool) -> None:
    sink = SlowSink()
    ingestor = WebhookIngestor(Secrets(), InMemoryDedupStore(Clock()), sink, lease_s=30)
    body = _body()
    with pytest.raises(StoreUnavailable):
        await _ingest(ingestor, body)
    assert ingestor.unsettled == 1
    meanwhile = await _ingest(ingestor, body)  # Meta's retry while the first may still land
    assert meanwhile.published == [] and len(meanwhile.in_flight) == 1
    assert sink.completion is not None
    if landed:
        sink.completion.set_result(None)
    else:
        sink.completion.set_exception(ConnectionError("gave up"))
    while ingestor.unsettled:
        await asyncio.sleep(0)
    retried = await _ingest(ingestor, body)
    if landed:
        assert retried.published == [] and len(retried.duplicates) == 1  # it is in Kafka already
    else:
        assert len(retried.published) == 1 and len(sink.published) == 1  # nothing lost
