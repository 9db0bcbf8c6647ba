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


# --- IPv6 forms that carry an IPv4 address, and other spellings of a private host ----------------

@pytest.mark.parametrize("literal", [
    pytest.param("2002:7f00:1::", id="6to4-loopback"),
    pytest.param("2002:a00:1::1", id="6to4-private"),
    pytest.param("2002:a9fe:a9fe::", id="6to4-metadata"),
    pytest.param("64:ff9b::7f00:1", id="nat64-loopback"),
    pytest.param("64:ff9b::a9fe:a9fe", id="nat64-metadata"),
    pytest.param("64:ff9b:1::808:808", id="nat64-local-use-prefix"),
    pytest.param("2001:0:4136:e378:8000:63bf:80ff:fffe", id="teredo-loopback-client"),
    pytest.param("2001:0:a00:1:8000:63bf:f7f7:f7f7", id="teredo-private-server"),
    pytest.param("::ffff:10.0.0.1", id="ipv4-mapped-private"),
    pytest.param("::ffff:169.254.169.254", id="ipv4-mapped-metadata"),
    pytest.param("::127.0.0.1", id="ipv4-compatible-loopback"),
    pytest.param("::ffff:0:127.0.0.1", id="ipv4-translated-loopback"),
    pytest.param("fd00:ec2::254", id="aws-ipv6-metadata"),
])
async def test_ipv6_forms_reaching_a_private_address_are_refused(literal: str) -> None:
    client = SafeHttpClient()
    try:
        answer = await client(call(f"http://[{literal}]:9/"))
    finally:
        await client.close()
    assert answer.error is not None and "non-public" in answer.error
    assert not answer.ok


@pytest.mark.parametrize("literal", [
    pytest.param("64:ff9b::808:808", id="nat64"),  # what DNS64 answers for a public host
    pytest.param("2002:808:808::1", id="6to4"),
    pytest.param("::ffff:8.8.8.8", id="ipv4-mapped"),
])
def test_a_public_ipv4_address_behind_a_translation_prefix_is_allowed(literal: str) -> None:
    import ipaddress
    assert SafeHttpClient().allowed(ipaddress.ip_address(literal))


@pytest.mark.parametrize("literal", ["169.254.169.254", "100.100.100.200", "fd00:ec2::254"])
def test_cloud_metadata_is_refused_even_inside_an_allowed_network(literal: str) -> None:
    import ipaddress
    client = SafeHttpClient(parse_networks("169.254.0.0/16, 100.64.0.0/10, fd00::/8"))
    assert not client.allowed(ipaddress.ip_address(literal))
    assert client.allowed(ipaddress.ip_address("169.254.1.1"))


@pytest.mark.parametrize("host", [
    pytest.param("2130706433", id="decimal"),
    pytest.param("0177.0.0.1", id="octal"),
    pytest.param("127.1", id="short"),
    pytest.param("0x7f.1", id="hex"),
    pytest.param("127.0.0.1.", id="ip-trailing-dot"),
    pytest.param("localhost.", id="localhost-trailing-dot"),
    pytest.param("LocalHost", id="localhost-case"),
    pytest.param("api.localhost", id="localhost-subdomain"),
    pytest.param("[0:0:0:0:0:0:0:1]", id="ipv6-long-loopback"),
    pytest.param("[::]", id="ipv6-unspecified"),
])
async def test_other_spellings_of_a_private_host_are_refused(host: str) -> None:
    client = SafeHttpClient()
    try:
        answer = await client(call(f"http://{host}:9/"))
    finally:
        await client.close()
    assert answer.error is not None and "non-public" in answer.error
    assert not answer.ok


async def test_a_name_with_any_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import socket

    async def resolver(host: str, port: int, **_: object) -> list[tuple]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))
                for address in ("93.184.216.34", "10.0.0.5")]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", resolver)
    client = SafeHttpClient()
    try:
        answer = await client(call("http://mixed.example.test/"))
    finally:
        await client.close()
    assert answer.error == "mixed.example.test resolves to a non-public address"


async def test_the_request_goes_to_the_address_that_was_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: a second answer (a private address) is never asked for, let alone used."""
    import asyncio
    import socket

    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    answers = iter(["127.0.0.1", "10.66.66.66"])
    lookups: list[str] = []

    async def rebinding_resolver(host: str, port: int, **_: object) -> list[tuple]:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", rebinding_resolver)
    client = SafeHttpClient(parse_networks("127.0.0.0/8"))  # the checked answer is the local test server
    try:
        answer = await client(call(f"http://rebind.example.test:{port}/x"))
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
    assert answer.status == 200 and answer.text == "ok"
    assert lookups == ["rebind.example.test"]
    assert f"host: rebind.example.test:{port}".encode() in seen[0].lower()
