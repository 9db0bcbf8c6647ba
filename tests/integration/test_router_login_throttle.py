"""Security finding 5 on real PostgreSQL: password guessing against POST /api/v1/auth/login is
throttled per account and per client address, in state every router replica shares.

Delays come from settings. The test that waits for an account's lock to end runs on a router
whose first delay is 5 s (it awaits the end by polling, never sleeps it out); the others, which
only need a lock to last, on a replica whose delays are a minute: no slow machine can outlast it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from pytake_plumbing.auth import AuthSettings
from pytake_router.app import create_app

from .tenancy_support import Api, in_process_router
from .waiting import eventually

pytestmark = pytest.mark.integration

LOGIN = "/api/v1/auth/login"
QUICK = 5
PATIENT = ADDRESS_DELAY = 60
THROTTLE_ENV = {
    "ROUTER_LOGIN_ACCOUNT_MAX_FAILURES": "5", "ROUTER_LOGIN_ACCOUNT_BASE_DELAY_S": str(QUICK),
    "ROUTER_LOGIN_ACCOUNT_MAX_DELAY_S": str(2 * QUICK),
    # An address's lock is never waited out here.
    "ROUTER_LOGIN_ADDRESS_MAX_FAILURES": "20", "ROUTER_LOGIN_ADDRESS_BASE_DELAY_S": str(ADDRESS_DELAY),
}


@pytest.fixture(scope="module")
async def api(servers, namespace) -> AsyncIterator[Api]:
    async with in_process_router({**servers.env, **THROTTLE_ENV}, f"{namespace}_throttle") as running:
        yield running


@pytest.fixture(scope="module")
async def replica(api: Api) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    """More router apps on the same database (replicas), whose clients may come from any address:
    one configured like `api`, one whose account delays start at a minute (`patient=True`)."""
    auth = AuthSettings.model_validate({"JWT_SECRET": secrets.token_urlsafe(32)})
    apps = {patient: create_app(settings, auth, configure_logs=False) for patient, settings in (
        (False, api.settings),
        (True, api.settings.model_copy(update={"login_account_base_delay_s": PATIENT,
                                               "login_account_max_delay_s": PATIENT})))}
    clients: list[httpx.AsyncClient] = []

    def client_from(address: str, *, patient: bool = False) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=apps[patient], client=(address, 40000))
        clients.append(httpx.AsyncClient(transport=transport, base_url="http://router"))
        return clients[-1]

    yield client_from
    for client in clients:
        await client.aclose()
    for app in apps.values():
        await app.state.engine.dispose()


async def new_user(api: Api) -> tuple[str, str]:
    _, admin = await api.new_organization("throttle")
    email, password = f"user-{secrets.token_hex(4)}@throttle.test", secrets.token_urlsafe(12)
    created = await api.call("POST", "/api/v1/users", admin, json={"email": email, "password": password,
                                                                    "role": "agent"})
    assert created.status_code == 201, created.text
    return email, password


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


def assert_throttled(response: httpx.Response, max_s: int) -> None:
    assert response.status_code == 429, response.text
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit() and 1 <= int(retry_after) <= max_s, retry_after
    assert response.json()["error"]["code"] == "too_many_requests"
    assert response.json()["error"]["details"] == {"retry_after_s": int(retry_after)}


async def test_thirty_wrong_passwords_in_a_row_are_throttled_and_so_is_the_right_one(api: Api, replica) -> None:
    email, password = await new_user(api)
    attacker = replica("198.51.100.10", patient=True)
    statuses = []
    for n in range(30):
        response = await login(attacker, email, f"wrong-{n}")
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert_throttled(response, max_s=PATIENT)
    assert statuses == [401] * 5 + [429] * 25
    # Throttled, the right password is refused too: from the attacker's address, and through the
    # other router from another address (every replica sees the same state).
    assert_throttled(await login(attacker, email, password), max_s=PATIENT)
    assert_throttled(await api.call("POST", LOGIN, json={"email": email, "password": password}), max_s=PATIENT)


async def test_the_account_opens_again_when_its_short_lock_ends(api: Api, replica) -> None:
    email, password = await new_user(api)
    attacker, user = replica("198.51.100.12"), replica("198.51.100.13")
    assert [(await login(attacker, email, f"wrong-{n}")).status_code for n in range(5)] == [401] * 5
    assert_throttled(await login(user, email, password), max_s=QUICK)
    # The lock is short: the right password gets in once it ends (refused polls do not extend it) …
    accepted = await eventually(lambda: login(user, email, password), lambda r: r.status_code != 429,
                                timeout_s=QUICK + 10)
    assert accepted.status_code == 200, accepted.text
    # … and a successful login starts the account afresh: five wrong guesses before any wait again.
    assert [(await login(attacker, email, f"again-{n}")).status_code for n in range(6)] == [401] * 5 + [429]


async def test_an_unknown_email_is_throttled_exactly_like_a_real_one(api: Api, replica) -> None:
    email, _ = await new_user(api)
    unknown = f"nobody-{secrets.token_hex(4)}@throttle.test"
    seen = {}
    for address, target in (("198.51.100.20", email), ("198.51.100.21", unknown)):
        client = replica(address, patient=True)
        responses = [await login(client, target, f"wrong-{n}") for n in range(8)]
        for response in responses[5:]:
            assert_throttled(response, max_s=PATIENT)
        seen[target] = [(r.status_code, r.json()["error"]["code"], sorted(r.json()["error"])) for r in responses]
    assert seen[email] == seen[unknown]
    assert [status for status, _, _ in seen[email]] == [401] * 5 + [429] * 3


async def test_thirty_concurrent_wrong_passwords_do_not_all_get_through(api: Api, replica) -> None:
    email, password = await new_user(api)
    attackers = [replica(f"198.51.100.{30 + n}", patient=True) for n in range(3)]
    responses = await asyncio.gather(*(login(attackers[n % 3], email, f"wrong-{n}") for n in range(30)))
    statuses = sorted(r.status_code for r in responses)
    # Each attempt is counted before its password is checked, one after the other: exactly the
    # five allowed failures reach the password check.
    assert statuses == [401] * 5 + [429] * 25, statuses
    for response in responses:
        if response.status_code == 429:
            assert_throttled(response, max_s=PATIENT)
    assert_throttled(await login(replica("198.51.100.40", patient=True), email, password), max_s=PATIENT)


async def test_one_address_is_throttled_across_accounts_apart_from_other_addresses(api: Api, replica) -> None:
    email, password = await new_user(api)
    sprayer = replica("203.0.113.50", patient=True)
    # Password spraying: one guess at each of 30 accounts (none of them reaches its own limit).
    responses = await asyncio.gather(*(login(sprayer, f"target-{n}-{secrets.token_hex(3)}@throttle.test", "guess")
                                       for n in range(30)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [401] * 20 + [429] * 10, statuses
    # The address is closed even for a real user's right password …
    assert_throttled(await login(sprayer, email, password), max_s=ADDRESS_DELAY)
    # … while the same user from another address is not: the account itself has no failure.
    assert (await login(replica("203.0.113.51", patient=True), email, password)).status_code == 200
