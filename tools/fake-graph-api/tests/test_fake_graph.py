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


async def test_lost_request_is_not_accepted_and_slow_one_is(client) -> None:
    await client.post("/_fake/failures", json={"mode": "lost", "delay_s": 0.01})
    await client.post("/_fake/failures", json={"mode": "slow", "delay_s": 0.01})
    lost = await client.post("/v23.0/100/messages", json=SEND, headers=AUTH)
    slow = await client.post("/v23.0/100/messages", json=SEND, headers=AUTH)
    assert lost.status_code == 504 and slow.status_code == 200
    stats = (await client.get("/_fake/throughput", params={"phone_number_id": "100"})).json()
    assert stats["calls"] == 2 and stats["accepted"] == 1


async def test_unparsable_body_is_invalid_parameter_and_recorded(client) -> None:
    response = await client.post("/v23.0/100/messages", content=b"{not json", headers=AUTH)
    assert response.status_code == 400 and response.json()["error"]["code"] == 100
    (call,) = (await client.get("/_fake/calls")).json()
    assert call["status"] == 400


async def test_reset_clears_calls_and_throughput(client) -> None:
    await client.post("/v23.0/100/messages", json=SEND, headers=AUTH)
    assert (await client.get("/_fake/throughput")).json()["accepted"] == 1
    await client.delete("/_fake/calls")
    stats = (await client.get("/_fake/throughput", params={"phone_number_id": "100"})).json()
    assert stats["calls"] == 0 and stats["accepted"] == 0 and stats["max_in_window"] == 0
    assert (await client.get("/_fake/calls")).json() == []


async def test_calls_can_be_found_by_callback_data(client) -> None:
    for tag in ("a", "b", "a"):
        await client.post("/v23.0/100/messages", json={**SEND, "biz_opaque_callback_data": tag}, headers=AUTH)
    assert len((await client.get("/_fake/calls", params={"callback": "a"})).json()) == 2


def test_max_in_window_counts_half_open_windows() -> None:
    from pytake_fake_graph.app import max_in_window

    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.2], 1.0) == 4  # [0.5, 1.5)
    assert max_in_window([0.0, 1.0, 2.0], 1.0) == 1
    assert max_in_window([], 1.0) == 0


async def test_failure_for_a_time_window_answers_every_send_then_ends(client, monkeypatch) -> None:
    import pytake_fake_graph.app as fake

    now = [1000.0]
    monkeypatch.setattr(fake.time, "time", lambda: now[0])
    await client.post("/_fake/failures", json={"http_status": 500, "code": 2, "message": "Service", "for_s": 10})
    during = [(await client.post("/v23.0/100/messages", json=SEND, headers=AUTH)).status_code for _ in range(4)]
    now[0] += 10.5
    after = (await client.post("/v23.0/100/messages", json=SEND, headers=AUTH)).status_code
    assert during == [500] * 4 and after == 200
