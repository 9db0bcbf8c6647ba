"""The management API on real PostgreSQL: tenants stay apart, roles hold, secrets stay hidden."""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest

from .tenancy_support import Api, in_process_router, new_phone_number_id

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def api(servers, namespace) -> AsyncIterator[Api]:
    async with in_process_router(servers.env, f"{namespace}_api") as running:
        yield running


def number_body(**overrides) -> dict:
    body = {"phone_number_id": new_phone_number_id(), "display_phone_number": "+1 555 0199",
            "meta_app_id": "4" + secrets.token_hex(4).translate(str.maketrans("abcdef", "123456")),
            "verify_token": "vt-" + secrets.token_hex(8), "app_secret": "as-" + secrets.token_hex(8),
            "access_token": "at-" + secrets.token_hex(8)}
    return {**body, **overrides}


async def tenant(api: Api) -> dict:
    """An organization with a number, a default chatbot, and a user of every role."""
    org_id, admin = await api.new_organization()
    secrets_ = number_body()
    number = (await api.call("POST", "/api/v1/numbers", admin, json=secrets_)).json()
    chatbot = (await api.call("POST", "/api/v1/chatbots", admin, json={
        "number_id": number["id"], "name": "Greeter", "flow_id": await api.new_flow(admin), "is_default": True})).json()
    tokens = {"org_admin": admin}
    users = {}
    for role in ("agent", "viewer"):
        email, password = f"{role}-{secrets.token_hex(3)}@{org_id[:8]}.test", secrets.token_urlsafe(12)
        created = await api.call("POST", "/api/v1/users", admin, json={"email": email, "password": password,
                                                                         "role": role})
        assert created.status_code == 201, created.text
        users[role] = created.json()
        tokens[role] = await api.login(email, password)
    return {"org_id": org_id, "tokens": tokens, "number": number, "chatbot": chatbot, "users": users,
            "secrets": secrets_}


async def test_another_organizations_ids_are_not_found_and_never_listed(api: Api) -> None:
    a, b = await tenant(api), await tenant(api)
    b_admin = b["tokens"]["org_admin"]
    foreign = {
        "numbers": a["number"]["id"],
        "chatbots": a["chatbot"]["id"],
        "users": a["users"]["agent"]["id"],
    }
    for collection, foreign_id in foreign.items():
        path = f"/api/v1/{collection}/{foreign_id}"
        assert (await api.call("GET", path, b_admin)).status_code == 404, path
        assert (await api.call("PATCH", path, b_admin, json={})).status_code == 404, path
        assert (await api.call("DELETE", path, b_admin)).status_code == 404, path
        listed = (await api.call("GET", f"/api/v1/{collection}?limit=200", b_admin)).json()
        assert listed["items"] and all(item["organization_id"] == b["org_id"] for item in listed["items"])
        assert foreign_id not in {item["id"] for item in listed["items"]}
    # Reading another organization, or hanging a chatbot on its number, is not found either.
    assert (await api.call("GET", f"/api/v1/organizations/{a['org_id']}", b_admin)).status_code == 404
    assert (await api.call("GET", f"/api/v1/organizations/{b['org_id']}", b_admin)).status_code == 200
    hijack = await api.call("POST", "/api/v1/chatbots", b_admin, json={
        "number_id": a["number"]["id"], "name": "Hijack", "flow_id": str(uuid4())})
    assert hijack.status_code == 404
    # A's rows are untouched by all of it.
    a_admin = a["tokens"]["org_admin"]
    assert (await api.call("GET", f"/api/v1/numbers/{a['number']['id']}", a_admin)).status_code == 200
    assert (await api.call("GET", f"/api/v1/users/{a['users']['agent']['id']}", a_admin)).status_code == 200
    filtered = (await api.call("GET", f"/api/v1/numbers?phone_number_id={a['number']['phone_number_id']}",
                               b_admin)).json()
    assert filtered["items"] == [] and filtered["total"] == 0


async def test_a_chatbot_points_only_at_a_live_flow_of_its_own_organization(api: Api) -> None:
    a, b = await tenant(api), await tenant(api)
    a_admin, b_admin = a["tokens"]["org_admin"], b["tokens"]["org_admin"]
    b_flow, made_up = b["chatbot"]["flow_id"], str(uuid4())
    deleted = await api.new_flow(a_admin)
    assert api.flow_engine is not None
    gone = await api.flow_engine.delete(f"/api/v1/flows/{deleted}", headers={"Authorization": f"Bearer {a_admin}"})
    assert gone.status_code == 204
    for flow_id in (b_flow, made_up, deleted):
        created = await api.call("POST", "/api/v1/chatbots", a_admin, json={
            "number_id": a["number"]["id"], "name": "Borrowed", "flow_id": flow_id})
        updated = await api.call("PATCH", f"/api/v1/chatbots/{a['chatbot']['id']}", a_admin, json={"flow_id": flow_id})
        for refused in (created, updated):
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"] == {"code": "unknown_flow",
                                               "message": f"flow {flow_id} does not exist in your organization"}
    # B's flow answers exactly like a made-up one; A's chatbot still runs A's flow; A's own flows are fine.
    mine = (await api.call("GET", f"/api/v1/chatbots/{a['chatbot']['id']}", a_admin)).json()
    assert mine["flow_id"] == a["chatbot"]["flow_id"]
    another = await api.new_flow(a_admin)
    assert (await api.call("POST", "/api/v1/chatbots", a_admin, json={
        "number_id": a["number"]["id"], "name": "Second", "flow_id": another})).status_code == 201
    moved = await api.call("PATCH", f"/api/v1/chatbots/{a['chatbot']['id']}", a_admin, json={"flow_id": another})
    assert moved.status_code == 200 and moved.json()["flow_id"] == another
    # B's chatbot is untouched.
    theirs = (await api.call("GET", f"/api/v1/chatbots/{b['chatbot']['id']}", b_admin)).json()
    assert theirs["flow_id"] == b_flow


async def test_a_flow_engine_that_cannot_answer_is_a_503_and_nothing_is_written(servers, namespace) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{probe.getsockname()[1]}"
    async with in_process_router(servers.env, f"{namespace}_nofe", flow_engine_url=down) as api:
        _, admin = await api.new_organization()
        number = (await api.call("POST", "/api/v1/numbers", admin, json=number_body())).json()
        response = await api.call("POST", "/api/v1/chatbots", admin, json={
            "number_id": number["id"], "name": "x", "flow_id": str(uuid4())})
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "unavailable" and "Traceback" not in response.text
        assert (await api.call("GET", "/api/v1/chatbots", admin)).json()["total"] == 0


async def test_viewer_and_agent_cannot_change_anything(api: Api) -> None:
    t = await tenant(api)
    writes = [
        ("POST", "/api/v1/numbers", number_body()),
        ("PATCH", f"/api/v1/numbers/{t['number']['id']}", {"active": False}),
        ("DELETE", f"/api/v1/numbers/{t['number']['id']}", None),
        ("POST", "/api/v1/chatbots", {"number_id": t["number"]["id"], "name": "x", "flow_id": str(uuid4())}),
        ("PATCH", f"/api/v1/chatbots/{t['chatbot']['id']}", {"active": False}),
        ("DELETE", f"/api/v1/chatbots/{t['chatbot']['id']}", None),
        ("POST", "/api/v1/users", {"email": "new@x.test", "password": "long-enough-1", "role": "org_admin"}),
        ("PATCH", f"/api/v1/users/{t['users']['agent']['id']}", {"role": "org_admin"}),
        ("DELETE", f"/api/v1/users/{t['users']['agent']['id']}", None),
        ("POST", "/api/v1/organizations", {"name": "Mine", "slug": "mine-" + secrets.token_hex(3)}),
        ("PATCH", f"/api/v1/organizations/{t['org_id']}", {"name": "Renamed"}),
        ("DELETE", f"/api/v1/organizations/{t['org_id']}", None),
    ]
    for role in ("viewer", "agent"):
        token = t["tokens"][role]
        for method, path, body in writes:
            response = await api.call(method, path, token, json=body) if body is not None else \
                await api.call(method, path, token)
            assert response.status_code == 403, (role, method, path, response.text)
            assert response.json()["error"]["code"] == "forbidden"
        # Reading is allowed.
        assert (await api.call("GET", f"/api/v1/numbers/{t['number']['id']}", token)).status_code == 200
        assert (await api.call("GET", "/api/v1/chatbots", token)).json()["total"] == 1
    # Nothing changed.
    number = (await api.call("GET", f"/api/v1/numbers/{t['number']['id']}", t["tokens"]["org_admin"])).json()
    assert number["active"] is True
    assert (await api.call("GET", "/api/v1/users", t["tokens"]["org_admin"])).json()["total"] == 3


async def test_secrets_are_write_only(api: Api) -> None:
    t = await tenant(api)
    admin = t["tokens"]["org_admin"]
    rotated = {"app_secret": "as-" + secrets.token_hex(8), "access_token": "at-" + secrets.token_hex(8)}
    await api.call("PATCH", f"/api/v1/numbers/{t['number']['id']}", admin, json=rotated)
    await api.call("GET", f"/api/v1/numbers/{t['number']['id']}", admin)
    await api.call("GET", "/api/v1/numbers", admin)
    await api.call("POST", "/api/v1/numbers", admin, json={**number_body(), "verify_token": ""})  # a 422
    hidden = [value for key, value in {**t["secrets"], **rotated}.items()
              if key in ("verify_token", "app_secret", "access_token")]
    leaked = [value for value in hidden for body in api.bodies if value in body]
    assert leaked == []


async def test_webhook_credentials_for_the_gateway(api: Api) -> None:
    t1, t2 = await tenant(api), await tenant(api)
    own_app = t1["number"]["meta_app_id"]
    token = api.settings.internal_token.get_secret_value()
    own = await api.call("GET", f"/internal/v1/meta-apps/{own_app}/webhook-credentials",
                         headers={"X-Internal-Token": token})
    assert own.json() == {"meta_app_id": own_app, "app_secrets": [t1["secrets"]["app_secret"]],
                          "verify_tokens": [t1["secrets"]["verify_token"]],
                          "phone_number_ids": [t1["number"]["phone_number_id"]]}

    # A provider's app, platform-owned: the platform admin binds two organizations' numbers to it.
    app_id = "7" + secrets.token_hex(5).translate(str.maketrans("abcdef", "123456"))
    platform = await api.platform_token()
    assert (await api.call("POST", "/api/v1/meta-apps", platform, json={"meta_app_id": app_id})).status_code == 201
    first = number_body(meta_app_id=app_id)
    shared = number_body(meta_app_id=app_id, app_secret=first["app_secret"])
    bound = [(await api.call("POST", f"/api/v1/organizations/{t['org_id']}/numbers", platform, json=body)).json()
             for t, body in ((t1, first), (t2, shared))]
    path = f"/internal/v1/meta-apps/{app_id}/webhook-credentials"

    found = await api.call("GET", path, headers={"X-Internal-Token": token})
    assert found.status_code == 200
    assert found.json() == {"meta_app_id": app_id, "app_secrets": [first["app_secret"]],
                            "verify_tokens": [first["verify_token"], shared["verify_token"]],
                            "phone_number_ids": sorted([first["phone_number_id"], shared["phone_number_id"]])}
    assert (await api.call("GET", path, headers={"X-Internal-Token": token + "x"})).status_code == 401
    assert (await api.call("GET", path)).status_code == 401
    assert (await api.call("GET", "/internal/v1/meta-apps/123/webhook-credentials",
                           headers={"X-Internal-Token": token})).status_code == 404

    # Deactivated and deleted numbers no longer count.
    await api.call("PATCH", f"/api/v1/numbers/{bound[1]['id']}", t2["tokens"]["org_admin"], json={"active": False})
    after = (await api.call("GET", path, headers={"X-Internal-Token": token})).json()
    assert after["verify_tokens"] == [first["verify_token"]]
    # Still bound: the router, not the gateway, says the inactive number is not served.
    assert shared["phone_number_id"] in after["phone_number_ids"]
    await api.call("DELETE", f"/api/v1/numbers/{bound[0]['id']}", t1["tokens"]["org_admin"])
    assert (await api.call("GET", path, headers={"X-Internal-Token": token})).status_code == 404


async def test_every_change_is_announced_through_the_outbox(api: Api) -> None:
    t = await tenant(api)
    admin = t["tokens"]["org_admin"]
    number, chatbot = t["number"], t["chatbot"]
    await api.call("PATCH", f"/api/v1/numbers/{number['id']}", admin, json={"phone_number_id": new_phone_number_id()})
    await api.call("PATCH", f"/api/v1/chatbots/{chatbot['id']}", admin, json={"active": False})
    await api.call("DELETE", f"/api/v1/chatbots/{chatbot['id']}", admin)
    await api.call("DELETE", f"/api/v1/numbers/{number['id']}", admin)
    mine = [e for e in await api.outbox() if e["organization_id"] == t["org_id"]]
    assert all(e["event_type"] == "registry.changed" and e["producer"] == "router" for e in mine)
    seen = [(e["payload"]["entity"], e["payload"]["change"], e["payload"]["phone_number_id"]) for e in mine]
    assert ("organization", "created", None) in seen
    assert ("number", "created", number["phone_number_id"]) in seen
    assert ("number", "updated", number["phone_number_id"]) in seen
    # The renamed number's new id is announced as well as the old one.
    renamed = [s for s in seen if s[0] == "number" and s[1] == "updated" and s[2] != number["phone_number_id"]]
    assert len(renamed) == 1
    assert ("chatbot", "created", number["phone_number_id"]) in seen
    assert ("chatbot", "updated", renamed[0][2]) in seen
    assert ("chatbot", "deleted", renamed[0][2]) in seen
    assert ("number", "deleted", renamed[0][2]) in seen
    number_events = [e for e in mine if e["payload"]["entity"] == "number"]
    assert all(e["payload"]["meta_app_id"] == number["meta_app_id"] for e in number_events)
    assert {e["payload"]["entity"] for e in mine} >= {"organization", "number", "chatbot", "user"}


async def test_soft_delete_conflicts_pagination_and_defaults(api: Api) -> None:
    t = await tenant(api)
    admin = t["tokens"]["org_admin"]
    number = t["number"]
    # One live registration per Meta phone number, across organizations.
    other_org, other_admin = await api.new_organization()
    taken = await api.call("POST", "/api/v1/numbers", other_admin,
                           json=number_body(phone_number_id=number["phone_number_id"]))
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "conflict"
    # It says the value is taken, not whose it is (nor echoes it back).
    assert taken.json()["error"]["message"] == "phone_number_id is taken"

    # Several chatbots: the default moves, pages and filters work.
    for name in ("Sales", "Support"):
        created = await api.call("POST", "/api/v1/chatbots", admin, json={
            "number_id": number["id"], "name": name, "flow_id": await api.new_flow(admin), "is_default": True,
            "start_keywords": [name.lower()]})
        assert created.status_code == 201, created.text
    defaults = (await api.call("GET", "/api/v1/chatbots?is_default=true", admin)).json()
    assert [c["name"] for c in defaults["items"]] == ["Support"]
    first = (await api.call("GET", "/api/v1/chatbots?limit=2&offset=0", admin)).json()
    rest = (await api.call("GET", "/api/v1/chatbots?limit=2&offset=2", admin)).json()
    assert first["total"] == rest["total"] == 3
    assert len(first["items"]) == 2 and len(rest["items"]) == 1
    assert {c["id"] for c in first["items"]}.isdisjoint({c["id"] for c in rest["items"]})
    assert (await api.call("GET", "/api/v1/chatbots?name=sup", admin)).json()["total"] == 1

    # Soft delete: gone from the API (with its chatbots), the phone number free again, the row kept.
    assert (await api.call("DELETE", f"/api/v1/numbers/{number['id']}", admin)).status_code == 204
    assert (await api.call("GET", f"/api/v1/numbers/{number['id']}", admin)).status_code == 404
    assert (await api.call("GET", "/api/v1/chatbots", admin)).json()["total"] == 0
    again = await api.call("POST", "/api/v1/numbers", other_admin,
                           json=number_body(phone_number_id=number["phone_number_id"]))
    assert again.status_code == 201
    assert other_org != t["org_id"]

    # Slugs and emails are unique among live rows.
    org = (await api.call("GET", f"/api/v1/organizations/{t['org_id']}", admin)).json()
    duplicate = await api.call("POST", "/api/v1/organizations", await api.platform_token(),
                               json={"name": "Dup", "slug": org["slug"]})
    assert duplicate.status_code == 409
    assert duplicate.json()["error"]["message"] == "slug is taken"
    email = t["users"]["viewer"]["email"]
    someone_elses = await api.call("POST", "/api/v1/users", other_admin, json={
        "email": email, "password": "long-enough-1"})
    assert someone_elses.status_code == 409
    assert someone_elses.json()["error"]["message"] == "email is taken" and email not in someone_elses.text


async def test_login_refresh_and_revocation(api: Api) -> None:
    org_id, admin = await api.new_organization()
    email, password = f"agent@{org_id[:8]}.test", "agent-password-1"
    user = (await api.call("POST", "/api/v1/users", admin, json={"email": email, "password": password,
                                                                  "role": "agent"})).json()
    wrong = await api.call("POST", "/api/v1/auth/login", json={"email": email, "password": "nope-nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthenticated"
    unknown = await api.call("POST", "/api/v1/auth/login", json={"email": "ghost@x.test", "password": "x"})
    assert unknown.status_code == 401

    pair = (await api.call("POST", "/api/v1/auth/login", json={"email": email.upper(), "password": password})).json()
    assert pair["token_type"] == "bearer" and pair["expires_in"] > 0
    refreshed = await api.call("POST", "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200
    fresh = refreshed.json()
    assert fresh["refresh_token"] != pair["refresh_token"]
    assert (await api.call("GET", "/api/v1/chatbots", fresh["access_token"])).status_code == 200
    # A spent refresh token used again means it leaked: it fails, and so does the one issued after it.
    reused = await api.call("POST", "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert reused.status_code == 401
    assert (await api.call("POST", "/api/v1/auth/refresh",
                           json={"refresh_token": fresh["refresh_token"]})).status_code == 401

    # Role changes apply at once; a deleted user's access token stops working.
    token = await api.login(email, password)
    await api.call("PATCH", f"/api/v1/users/{user['id']}", admin, json={"role": "viewer"})
    assert (await api.call("GET", "/api/v1/users", token)).status_code == 200
    assert (await api.call("DELETE", f"/api/v1/users/{user['id']}", admin)).status_code == 204
    gone = await api.call("GET", "/api/v1/users", token)
    assert gone.status_code == 401
    assert (await api.call("GET", "/api/v1/users")).status_code == 401
    assert (await api.call("GET", "/api/v1/users", "not-a-jwt")).status_code == 401

    # An org admin cannot lock themselves out; the platform admin has no tenant data.
    me = (await api.call("GET", "/api/v1/users?role=org_admin", admin)).json()["items"][0]
    assert (await api.call("DELETE", f"/api/v1/users/{me['id']}", admin)).status_code == 409
    assert (await api.call("GET", "/api/v1/numbers", await api.platform_token())).status_code == 403


async def test_organization_lifecycle_by_the_platform_admin(api: Api) -> None:
    platform = await api.platform_token()
    t = await tenant(api)
    listed = (await api.call("GET", "/api/v1/organizations?limit=200", platform)).json()
    assert t["org_id"] in {o["id"] for o in listed["items"]}
    assert (await api.call("GET", "/api/v1/organizations", t["tokens"]["org_admin"])).status_code == 403
    renamed = await api.call("PATCH", f"/api/v1/organizations/{t['org_id']}", platform, json={"name": "Renamed"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Renamed"
    assert (await api.call("DELETE", f"/api/v1/organizations/{t['org_id']}", platform)).status_code == 204
    assert (await api.call("GET", f"/api/v1/organizations/{t['org_id']}", platform)).status_code == 404
    # Its users are gone with it, and its number's credentials too.
    assert (await api.call("GET", "/api/v1/numbers", t["tokens"]["viewer"])).status_code == 401
    token = api.settings.internal_token.get_secret_value()
    creds = await api.call("GET", f"/internal/v1/meta-apps/{t['number']['meta_app_id']}/webhook-credentials",
                           headers={"X-Internal-Token": token})
    assert creds.status_code == 404


async def test_invalid_requests_get_structured_errors(api: Api) -> None:
    _, admin = await api.new_organization()
    bad = await api.call("POST", "/api/v1/numbers", admin, json={"phone_number_id": "abc"})
    assert bad.status_code == 422
    body = bad.json()
    assert body["error"]["code"] == "validation_error" and "Traceback" not in bad.text
    extra = await api.call("POST", "/api/v1/chatbots", admin, json={
        "number_id": str(uuid4()), "name": "x", "flow_id": str(uuid4()), "organization_id": str(uuid4())})
    assert extra.status_code == 422  # a client cannot choose its organization
    assert (await api.call("GET", "/api/v1/numbers/not-a-uuid", admin)).status_code == 422
    assert (await api.call("GET", "/api/v1/numbers?limit=0", admin)).status_code == 422
