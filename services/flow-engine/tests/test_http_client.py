"""SSRF protection of http_request nodes: nothing private is reached unless a setting allows it."""

import pytest

from pytake_flow_engine.adapters.http_client import SafeHttpClient, parse_networks
from pytake_flow_engine.domain.executor import HttpCall


def call(url: str) -> HttpCall:
    return HttpCall(method="GET", url=url, headers={}, body=None, timeout_s=1.0)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/x",
    "http://localhost:9/x",
    "http://10.1.2.3/",
    "http://192.168.0.1/",
    "http://172.16.5.5/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:9/",
    "http://[::ffff:127.0.0.1]:9/",
    "http://[fe80::1]/",
    "http://0.0.0.0:9/",
    "http://100.64.0.1/",
])
async def test_private_loopback_and_link_local_addresses_are_refused(url: str) -> None:
    client = SafeHttpClient()
    try:
        answer = await client(call(url))
    finally:
        await client.close()
    assert answer.error is not None and "non-public" in answer.error
    assert not answer.ok


async def test_other_schemes_are_refused() -> None:
    client = SafeHttpClient()
    try:
        assert (await client(call("file:///etc/passwd"))).error == "only http and https URLs are allowed"
    finally:
        await client.close()


async def test_an_allowed_network_is_let_through_and_nothing_else() -> None:
    client = SafeHttpClient(parse_networks("127.0.0.0/8"))
    try:
        assert await client.resolve("127.0.0.1", 80) == "127.0.0.1"
        assert (await client(call("http://10.0.0.1/"))).error is not None
    finally:
        await client.close()


def test_public_addresses_are_allowed() -> None:
    client = SafeHttpClient()
    import ipaddress
    assert client.allowed(ipaddress.ip_address("93.184.216.34"))
    assert not client.allowed(ipaddress.ip_address("127.0.0.1"))
