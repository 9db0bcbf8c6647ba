"""HTTP calls for http_request nodes, with SSRF protection.

The host is resolved once and every address checked; the request then goes to that
checked address (Host header and TLS server name kept), so a second DNS answer cannot
point it elsewhere. Redirects are not followed and the answer's size is bounded.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..domain.executor import HttpAnswer, HttpCall

MAX_RESPONSE_BYTES = 1_000_000
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class RefusedAddress(Exception):
    pass


def parse_networks(spec: str) -> list[Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()]


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return not (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
                or address.is_reserved or address.is_unspecified or not address.is_global)


class SafeHttpClient:
    def __init__(self, allowed_networks: list[Network] | None = None) -> None:
        self._allowed = allowed_networks or []
        self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)

    def allowed(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return is_public(address) or any(address in network for network in self._allowed)

    async def resolve(self, host: str, port: int) -> str:
        """The address to connect to, once every address the host resolves to is allowed."""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
            addresses = [literal]
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise RefusedAddress(f"cannot resolve {host}") from exc
            addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        if not addresses:
            raise RefusedAddress(f"cannot resolve {host}")
        for address in addresses:
            if not self.allowed(address):
                raise RefusedAddress(f"{host} resolves to a non-public address")
        return str(addresses[0])

    async def __call__(self, call: HttpCall) -> HttpAnswer:
        try:
            parts = urlsplit(call.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                return HttpAnswer(error="only http and https URLs are allowed")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            address = await self.resolve(parts.hostname, port)
        except RefusedAddress as exc:
            return HttpAnswer(error=str(exc))
        except ValueError:
            return HttpAnswer(error="invalid URL")
        netloc_host = f"[{address}]" if ":" in address else address
        target = urlunsplit((parts.scheme, f"{netloc_host}:{port}", parts.path or "/", parts.query, ""))
        headers = {**call.headers, "Host": parts.netloc.rsplit("@", 1)[-1]}
        try:
            async with self._client.stream(
                call.method, target, headers=headers, content=call.body, timeout=call.timeout_s,
                extensions={"sni_hostname": parts.hostname} if parts.scheme == "https" else {},
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_RESPONSE_BYTES:
                        return HttpAnswer(status=response.status_code, error="response too large")
                return HttpAnswer(status=response.status_code, text=body.decode(errors="replace"))
        except httpx.TimeoutException:
            return HttpAnswer(error="timeout")
        except httpx.HTTPError as exc:
            return HttpAnswer(error=f"request failed: {type(exc).__name__}")

    async def close(self) -> None:
        await self._client.aclose()
