"""HTTP calls for http_request nodes, with SSRF protection.

The host is resolved once and every address checked; the request then goes to that
checked address (Host header and TLS server name kept), so a second DNS answer cannot
point it elsewhere. An IPv6 address that carries an IPv4 one (mapped, 6to4, NAT64, Teredo…)
is judged by that IPv4 address too. Redirects are not followed and the answer's size is bounded.
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
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services hand out cloud credentials: refused even inside an allowed network.
CLOUD_METADATA = [ipaddress.ip_network(n) for n in (
    "169.254.169.254/32",  # AWS, GCP, Azure, OCI, OpenStack, DigitalOcean
    "169.254.170.2/32", "169.254.170.23/32",  # AWS ECS task and EKS pod-identity credentials
    "100.100.100.200/32",  # Alibaba Cloud
    "fd00:ec2::254/128", "fd00:ec2::23/128",  # AWS over IPv6
)]
# IPv6 ranges whose traffic ends at the IPv4 address in their last 32 bits (NAT64's well-known
# prefix, RFC 6052; IPv4-compatible, RFC 4291; IPv4-translated, RFC 2765). Python's own flags for
# these ranges differ between versions, so the IPv4 address decides.
LOW_32_BITS_IPV4 = [ipaddress.ip_network(n) for n in ("64:ff9b::/96", "::/96", "::ffff:0:0:0/96")]
# NAT64's local-use prefix (RFC 8215) maps to whatever the operator chose: refused outright.
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")


class RefusedAddress(Exception):
    pass


def parse_networks(spec: str) -> list[Network]:
    return [ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()]


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 addresses an IPv6 address carries (a translator or relay delivers to them), else None."""
    if address.ipv4_mapped:
        return [address.ipv4_mapped]
    if address.sixtofour:  # 2002::/16
        return [address.sixtofour]
    if address.teredo:  # 2001::/32: the relay (server) and the client's NAT both get the traffic
        return list(address.teredo)
    if any(address in network for network in LOW_32_BITS_IPV4):
        return [ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)]
    return None


def is_cloud_metadata(address: Address) -> bool:
    inner = embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    return any(a in network for a in [address, *(inner or [])] for network in CLOUD_METADATA)


def is_public(address: Address) -> bool:
    if is_cloud_metadata(address):
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address in NAT64_LOCAL_USE:
            return False
        inner = embedded_ipv4(address)
        if inner is not None and not all(_flags_public(v4) for v4 in inner):
            return False
        if inner is not None and address.teredo is None:
            return True  # a translation prefix: the IPv4 address decides (DNS64 answers public hosts so)
        # Obsolete Teredo must also pass as an IPv6 address, which 2001::/23 does not.
    return _flags_public(address)


def _flags_public(address: Address) -> bool:
    return not (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
                or address.is_reserved or address.is_unspecified or not address.is_global)


def is_localhost_name(host: str) -> bool:
    # RFC 6761: "localhost" and every name under it are loopback, whatever a resolver says.
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


class SafeHttpClient:
    def __init__(self, allowed_networks: list[Network] | None = None) -> None:
        self._allowed = allowed_networks or []
        self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)

    def allowed(self, address: Address) -> bool:
        if is_cloud_metadata(address):
            return False
        return is_public(address) or any(address in network for network in self._allowed)

    async def resolve(self, host: str, port: int) -> str:
        """The address to connect to, once every address the host resolves to is allowed."""
        try:
            # A trailing dot makes a name absolute; on an IP literal it changes nothing.
            literal = LOOPBACK if is_localhost_name(host) else ipaddress.ip_address(host.strip("[]").rstrip("."))
            addresses = [literal]
        except ValueError:
            # Other spellings of an address (2130706433, 0177.0.0.1, 127.1, 0x7f.1) come back from
            # the resolver as the address they mean, and are checked as such.
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
