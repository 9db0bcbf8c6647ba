"""A webhook reaches only numbers bound to the Meta app whose secret verified it (real stack: a gateway
in registry mode, the router, the flow engine, the sender; two organizations with an app each).

The attack: org A, holding its own app's secret, signs a message "to" org B's number and posts it
to A's app path. Before, B got a conversation and B's bot answered a number of A's choosing.
"""

from __future__ import annotations

import secrets

import httpx
import pytest

from pytake_contracts import DeadLettered, MessageUnroutable
from pytake_contracts.topics import DEAD_LETTERS, MESSAGES_UNROUTABLE
from pytake_devstack import meta_payloads
from pytake_devstack.demo_tenant import DEMO_FLOW

from .tenancy_support import Api, new_phone_number_id, pipeline_router, routed_tenant
from .test_gateway_kafka import read_topic
from .test_gateway_registry import registry_gateway  # noqa: F401 - a gateway checking each app's own secrets
from .test_pipeline import graph_calls, new_wa_id
from .waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def api(pipeline):
    async with pipeline_router(pipeline) as running:
        yield running


async def post(gateway: str, meta_app_id: str, payload: dict, secret: str) -> httpx.Response:
    body = meta_payloads.encode(payload)
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(f"{gateway}/api/v1/webhooks/whatsapp/{meta_app_id}", content=body, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": meta_payloads.sign(body, secret)})


async def unroutable(settings, wamid: str) -> list[MessageUnroutable]:
    events = await read_topic(settings.kafka_bootstrap_servers, settings.topic(MESSAGES_UNROUTABLE))
    return [e for e in events if isinstance(e, MessageUnroutable) and wamid in str(e.payload.original)]


async def test_a_message_signed_with_one_organization_s_app_never_reaches_another_s_number(
        pipeline, settings, api: Api, registry_gateway: str) -> None:
    a = await routed_tenant(api, pipeline, flow=DEMO_FLOW)
    b = await routed_tenant(api, pipeline, flow=DEMO_FLOW)
    victim = new_wa_id()  # the number the attacker wants B's bot to write to

    attack = meta_payloads.text_message(b["number"]["phone_number_id"], "hi", wa_id=victim)
    wamid = attack["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    answered = await post(registry_gateway, a["number"]["meta_app_id"], attack, a["secrets"]["app_secret"])
    # Meta must not retry it for 7 days: the gateway answers 200, and stores nothing of it.
    assert answered.status_code == 200
    assert answered.json() == {"status": "accepted", "stored": 0, "ignored": 1}
    async with httpx.AsyncClient(timeout=10) as client:
        metrics = (await client.get(f"{registry_gateway}/metrics")).text
    assert 'pytake_gateway_ignored_total{reason="number_not_bound_to_app"}' in metrics
    assert "webhook_for_foreign_number" in (pipeline.log_dir / "gateway-registry.log").read_text()
    assert await unroutable(settings, wamid) == []  # not even as far as the router
    (refused,) = [e for e in await read_topic(settings.kafka_bootstrap_servers, settings.topic(DEAD_LETTERS))
                  if isinstance(e, DeadLettered) and wamid in e.payload.original]
    assert refused.payload.error.startswith("number_not_bound_to_app")
    assert refused.payload.key == b["number"]["phone_number_id"]

    # The same message signed by B's own app is B's: routed, and B's bot answers (so the path works).
    customer = new_wa_id()
    own = meta_payloads.text_message(b["number"]["phone_number_id"], "hi", wa_id=customer)
    assert (await post(registry_gateway, b["number"]["meta_app_id"], own, b["secrets"]["app_secret"])).status_code == 200
    await eventually(lambda: graph_calls(pipeline, customer), lambda calls: len(calls) >= 1, timeout_s=60)

    # Nothing of the attack was stored, so nothing of it can follow: no reply to the victim, no
    # conversation of B's with them.
    assert await graph_calls(pipeline, victim) == []
    conversations = await api.client.get(f"{pipeline.url('flow-engine')}/api/v1/conversations",
                                         headers={"Authorization": f"Bearer {b['admin']}"},
                                         params={"contact_key": f"p:{victim}"})
    assert conversations.status_code == 200 and conversations.json() == []


async def test_an_org_admin_cannot_attach_a_number_or_secret_to_another_organization_s_app(api: Api, pipeline) -> None:
    a = await routed_tenant(api, pipeline)
    b = await routed_tenant(api, pipeline)
    b_app = b["number"]["meta_app_id"]
    attacker_secret = "as-" + secrets.token_hex(12)
    body = {"phone_number_id": new_phone_number_id(), "display_phone_number": "+1 555 0199", "meta_app_id": b_app,
            "verify_token": "vt-" + secrets.token_hex(8), "app_secret": attacker_secret,
            "access_token": "at-" + secrets.token_hex(8)}

    created = await api.call("POST", "/api/v1/numbers", a["admin"], json=body)
    assert created.status_code == 409
    assert created.json()["error"]["message"] == "meta_app_id is taken"  # not whose
    moved = await api.call("PATCH", f"/api/v1/numbers/{a['number']['id']}", a["admin"],
                           json={"meta_app_id": b_app, "app_secret": attacker_secret})
    assert moved.status_code == 409
    claimed = await api.call("POST", "/api/v1/meta-apps", a["admin"], json={"meta_app_id": b_app})
    assert claimed.status_code == 409

    # B's app still accepts B's secret only, and A's number still belongs to A's own app.
    token = api.settings.internal_token.get_secret_value()
    credentials = await api.call("GET", f"/internal/v1/meta-apps/{b_app}/webhook-credentials",
                                 headers={"X-Internal-Token": token})
    assert credentials.json()["app_secrets"] == [b["secrets"]["app_secret"]]
    mine = await api.call("GET", f"/api/v1/numbers/{a['number']['id']}", a["admin"])
    assert mine.json()["meta_app_id"] == a["number"]["meta_app_id"]
    apps = (await api.call("GET", "/api/v1/meta-apps", a["admin"])).json()
    assert [app["meta_app_id"] for app in apps["items"]] == [a["number"]["meta_app_id"]]


async def test_only_the_platform_admin_binds_numbers_to_a_platform_owned_app(api: Api, pipeline) -> None:
    platform = await api.platform_token()
    meta_app_id = "8" + "".join(secrets.choice("0123456789") for _ in range(11))
    app = await api.call("POST", "/api/v1/meta-apps", platform, json={"meta_app_id": meta_app_id})
    assert app.status_code == 201 and app.json()["organization_id"] is None
    a = await routed_tenant(api, pipeline)
    b = await routed_tenant(api, pipeline)

    def number(app_secret: str) -> dict:
        return {"phone_number_id": new_phone_number_id(), "display_phone_number": "+1 555 0198",
                "meta_app_id": meta_app_id, "verify_token": "vt-" + secrets.token_hex(8), "app_secret": app_secret,
                "access_token": "at-" + secrets.token_hex(8)}

    provider_secret = "as-" + secrets.token_hex(12)
    assert (await api.call("POST", "/api/v1/numbers", a["admin"], json=number(provider_secret))).status_code == 409
    for tenant in (a, b):
        bound = await api.call("POST", f"/api/v1/organizations/{tenant['org_id']}/numbers", platform,
                               json=number(provider_secret))
        assert bound.status_code == 201 and bound.json()["organization_id"] == tenant["org_id"]
    # An organization's own app stays its own, even for the platform admin.
    foreign = await api.call("POST", f"/api/v1/organizations/{a['org_id']}/numbers", platform,
                             json={**number(provider_secret), "meta_app_id": b["number"]["meta_app_id"]})
    assert foreign.status_code == 409
    # Org admins see their own apps only; the platform app is listed for the platform admin.
    assert app.json()["id"] not in {x["id"] for x in (await api.call("GET", "/api/v1/meta-apps", a["admin"])).json()["items"]}
    assert (await api.call("GET", f"/api/v1/meta-apps/{app.json()['id']}", a["admin"])).status_code == 404
    assert (await api.call("GET", f"/api/v1/meta-apps/{app.json()['id']}", platform)).status_code == 200
