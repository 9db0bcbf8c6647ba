"""A gateway in registry mode takes each Meta app's secrets and verify tokens from the real router."""

from __future__ import annotations

import httpx
import pytest

from pytake_contracts import InboundMessageReceived, WebhookReceived
from pytake_contracts.topics import WEBHOOK_INTAKE
from pytake_devstack import meta_payloads
from pytake_devstack.demo_tenant import DEMO_TENANT

from .gateway_processes import start_gateway
from .test_gateway_kafka import forwarded, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry_gateway(pipeline):
    env = {**pipeline.env, "GATEWAY_SECRETS_SOURCE": "registry", "ROUTER_INTERNAL_URL": pipeline.url("router"),
           "GATEWAY_DEMO_APP_SECRET": "", "GATEWAY_DEMO_VERIFY_TOKEN": ""}
    gateway = start_gateway(env, pipeline.log_dir, "gateway-registry")
    try:
        yield gateway.url
    finally:
        gateway.stop()


async def test_per_app_path_uses_the_registry_s_secrets(registry_gateway, settings) -> None:
    app_path = f"{registry_gateway}/api/v1/webhooks/whatsapp/{DEMO_TENANT.meta_app_id}"
    wamid = meta_payloads.new_wamid()
    body = meta_payloads.encode(meta_payloads.text_message(DEMO_TENANT.phone_number_id, "via the registry",
                                                           wamid=wamid))
    async with httpx.AsyncClient(timeout=30) as client:
        def post(url: str, secret: str):
            return client.post(url, content=body, headers={
                "Content-Type": "application/json", "X-Hub-Signature-256": meta_payloads.sign(body, secret)})

        accepted = await post(app_path, DEMO_TENANT.app_secret)
        assert accepted.status_code == 200
        assert accepted.json() == {"status": "accepted", "stored": 1, "ignored": 0}
        assert (await post(app_path, "not-the-app-secret")).status_code == 401
        unknown = await post(f"{registry_gateway}/api/v1/webhooks/whatsapp/123456789", DEMO_TENANT.app_secret)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_app"
        # Outside demo mode the path without an app id serves nothing.
        assert (await post(f"{registry_gateway}/api/v1/webhooks/whatsapp", DEMO_TENANT.app_secret)).status_code == 404

        handshake = {"hub.mode": "subscribe", "hub.verify_token": DEMO_TENANT.verify_token, "hub.challenge": "77"}
        verified = await client.get(app_path, params=handshake)
        assert verified.status_code == 200 and verified.text == "77"
        refused = await client.get(app_path, params={**handshake, "hub.verify_token": "guess"})
        assert refused.status_code == 403

    # Stored with the app whose secret signed it, then forwarded like any other webhook.
    intake = await read_topic(settings.kafka_bootstrap_servers, settings.topic(WEBHOOK_INTAKE))
    (stored,) = [e for e in intake if isinstance(e, WebhookReceived) and wamid in e.payload.body]
    assert stored.payload.meta_app_id == DEMO_TENANT.meta_app_id
    (message,) = await forwarded(settings, wamid)
    assert isinstance(message, InboundMessageReceived) and message.causation_id == str(stored.event_id)
