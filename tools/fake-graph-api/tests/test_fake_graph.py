import httpx
import pytest

from pytake_fake_graph.app import create_app


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=create_app(expected_token="good"))
    async with httpx.AsyncClient(transport=transport, base_url="http://graph") as c:
        yield c


SEND = {"messaging_product": "whatsapp", "to": "15551234567", "type": "text", "text": {"body": "hi"}}
AUTH = {"Authorization": "Bearer good"}


async def test_send_answers_like_meta_and_is_recorded(client) -> None:
    response = await client.post("/v23.0/100/messages", json=SEND, headers=AUTH)
    assert response.status_code == 200
    wamid = response.json()["messages"][0]["id"]
    assert wamid.startswith("wamid.")
    (call,) = (await client.get("/_fake/calls")).json()
    assert call["phone_number_id"] == "100" and call["body"]["text"]["body"] == "hi"
    assert call["response"]["messages"][0]["id"] == wamid


async def test_bad_token_is_oauth_error(client) -> None:
    response = await client.post("/v23.0/100/messages", json=SEND, headers={"Authorization": "Bearer bad"})
    assert response.status_code == 401 and response.json()["error"]["code"] == 190


async def test_injected_failures_are_served_then_cleared(client) -> None:
    await client.post("/_fake/failures", json={"http_status": 400, "code": 131047, "message": "window", "count": 2})
    codes = [(await client.post("/v23.0/100/messages", json=SEND, headers=AUTH)).json() for _ in range(3)]
    assert [c.get("error", {}).get("code") for c in codes] == [131047, 131047, None]


async def test_failure_for_one_number_spares_others(client) -> None:
    await client.post("/_fake/failures", json={"code": 130429, "phone_number_id": "200"})
    assert (await client.post("/v23.0/100/messages", json=SEND, headers=AUTH)).status_code == 200
    assert (await client.post("/v23.0/200/messages", json=SEND, headers=AUTH)).status_code == 429
