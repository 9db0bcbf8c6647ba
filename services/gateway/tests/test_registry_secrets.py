"""Credentials per Meta app from the router's registry: cached, dropped on RegistryChanged, TTL backstop."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import httpx
import pytest

from pytake_contracts import RegistryChanged, RegistryChangedPayload, encode_event
from pytake_contracts.topics import REGISTRY_CHANGES
from pytake_devstack import meta_payloads
from pytake_devstack import meta_samples as meta
from pytake_devstack.fake_records import FakeRecordProducer, FakeRecordSource
from pytake_gateway.adapters.secrets import RegistrySecretSource
from pytake_gateway.app import create_app
from pytake_gateway.service.ingest import SecretsUnavailable
from pytake_gateway.settings import GatewaySettings

TOKEN = "internal-token"


class FakeRegistry:
    """Stands in for GET /internal/v1/meta-apps/{id}/webhook-credentials of the router."""

    def __init__(self) -> None:
        self.apps: dict[str, tuple[list[str], list[str]]] = {"app1": (["secret-a"], ["verify-a"])}
        self.calls: list[str] = []
        self.down = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("router down")
        if request.headers.get("X-Internal-Token") != TOKEN:
            return httpx.Response(401, json={"error": {"code": "unauthorized", "message": "no"}})
        app_id = request.url.path.split("/")[4]
        self.calls.append(app_id)
        if app_id not in self.apps:
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "no such app"}})
        secrets_, tokens = self.apps[app_id]
        return httpx.Response(200, json={"meta_app_id": app_id, "app_secrets": secrets_, "verify_tokens": tokens})


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def _source(registry: FakeRegistry, clock: Clock, token: str = TOKEN) -> RegistrySecretSource:
    client = httpx.AsyncClient(transport=httpx.MockTransport(registry.handle), base_url="http://router")
    return RegistrySecretSource(client, token, clock, ttl_s=300, unknown_ttl_s=30)


async def test_credentials_are_cached_per_app_until_invalidated_or_expired() -> None:
    registry, clock = FakeRegistry(), Clock()
    source = _source(registry, clock)
    first = await source.credentials("app1")
    assert first is not None and first.app_secrets == ["secret-a"] and first.verify_tokens == ["verify-a"]
    await source.credentials("app1")
    assert registry.calls == ["app1"]
    registry.apps["app1"] = (["secret-a", "secret-b"], ["verify-a"])
    source.invalidate("app1")
    assert (await source.credentials("app1")).app_secrets == ["secret-a", "secret-b"]
    clock.now += 301  # the TTL backstop
    await source.credentials("app1")
    assert registry.calls == ["app1", "app1", "app1"]


async def test_unknown_app_is_none_cached_briefly_and_the_bare_path_has_no_app() -> None:
    registry, clock = FakeRegistry(), Clock()
    source = _source(registry, clock)
    assert await source.credentials("nope") is None
    assert await source.credentials("nope") is None
    assert registry.calls == ["nope"]
    clock.now += 31
    await source.credentials("nope")
    assert registry.calls == ["nope", "nope"]
    assert await source.credentials(None) is None


async def test_a_burst_for_a_cold_app_asks_the_registry_once() -> None:
    registry = FakeRegistry()
    source = _source(registry, Clock())
    results = await asyncio.gather(*(source.credentials("app1") for _ in range(20)))
    assert all(r is not None for r in results) and registry.calls == ["app1"]


async def test_registry_down_or_refusing_is_unavailable_not_unknown() -> None:
    registry = FakeRegistry()
    registry.down = True
    with pytest.raises(SecretsUnavailable):
        await _source(registry, Clock()).credentials("app1")
    with pytest.raises(SecretsUnavailable):
        await _source(FakeRegistry(), Clock(), token="wrong").credentials("app1")


async def test_registry_mode_over_http_with_rotation_announced_on_kafka() -> None:
    registry = FakeRegistry()
    settings = GatewaySettings.model_validate({"GATEWAY_SECRETS_SOURCE": "registry", "PYTAKE_INTERNAL_TOKEN": TOKEN,
                                               "PYTAKE_NAMESPACE": "unitreg"})
    source = _source(registry, Clock())
    invalidated = asyncio.Event()
    invalidate = source.invalidate

    def invalidate_and_tell(meta_app_id: str | None = None) -> None:  # lets the test await the change's effect
        invalidate(meta_app_id)
        invalidated.set()

    source.invalidate = invalidate_and_tell  # type: ignore[method-assign]
    changes = FakeRecordSource()
    app = create_app(settings, secrets=source, producer=FakeRecordProducer(), source=changes)
    path = "/api/v1/webhooks/whatsapp/app1"

    def post(client: httpx.AsyncClient, secret: str, url: str = path):
        body = meta.encode(meta.webhook(meta.value(contacts=[meta.contact()], messages=[meta.messages()["text"]])))
        return client.post(url, content=body, headers={"Content-Type": "application/json",
                                                       "X-Hub-Signature-256": meta_payloads.sign(body, secret)})

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            assert (await post(client, "secret-a")).status_code == 200
            verify = await client.get(path, params={"hub.mode": "subscribe", "hub.verify_token": "verify-a",
                                                    "hub.challenge": "c1"})
            assert verify.status_code == 200 and verify.text == "c1"
            registry.apps["app1"] = (["secret-b"], ["verify-a"])
            assert (await post(client, "secret-b")).status_code == 401  # still the cached secret
            change = RegistryChanged(correlation_id="c", producer="router", payload=RegistryChangedPayload(
                entity="number", entity_id=uuid4(), change="updated", meta_app_id="app1"))
            changes.put(settings.topic(REGISTRY_CHANGES), encode_event(change))
            await asyncio.wait_for(invalidated.wait(), 5)
            assert (await post(client, "secret-b")).status_code == 200
            assert (await post(client, "secret-a")).status_code == 401
            unknown = await post(client, "secret-b", "/api/v1/webhooks/whatsapp/app2")
            assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_app"
            assert (await post(client, "secret-b", "/api/v1/webhooks/whatsapp")).status_code == 404
            source.invalidate()
            registry.down = True
            assert (await post(client, "secret-b")).status_code == 503

    assert changes.started and changes.stopped  # the app started and stopped its consumer of the changes
